"""scan_tls refuses bad arguments with one clear InputError, and reports an unreachable endpoint as an error finding."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.errors import InputError
from scanners.findings import Finding, ResourceKind, Status
from scanners.scanning import ScanContext, TlsEndpoint
from scanners.tls import scan_tls

GOOD = TlsEndpoint("127.0.0.1", 443, "good.test", "host-a")


def _scan(endpoints: list[TlsEndpoint], **kwargs: object) -> list[Finding]:
    found: list[Finding] = []
    scan_tls(ScanContext(default_catalog(), emit=found.append), endpoints, **kwargs)  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize(
    ("endpoints", "kwargs", "message"),
    [
        ([GOOD], {"profile": "paranoid"}, "unknown TLS profile 'paranoid' (expected one of: intermediate, modern)"),
        ([GOOD], {"timeout": 0}, "TLS scan timeout must be a positive number of seconds, not 0"),
        ([GOOD], {"timeout": float("nan")}, "TLS scan timeout must be a positive number"),
        ([GOOD], {"min_days_valid": -1}, "minimum days of certificate validity must be 0 or more"),
        ([GOOD], {"hsts_min_age": -5}, "HSTS minimum max-age must be 0 or more"),
        ([TlsEndpoint("127.0.0.1", 0)], {}, "TLS endpoint 127.0.0.1:0: port must be 1-65535"),
        ([TlsEndpoint("127.0.0.1", 70000)], {}, "port must be 1-65535"),
        ([TlsEndpoint("", 443)], {}, "TLS endpoint :443: empty address"),
    ],
)
def test_bad_arguments_are_one_line_input_errors(
    endpoints: list[TlsEndpoint], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as raised:
        _scan(endpoints, **kwargs)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_ca_file_must_exist_and_hold_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"CA file .*missing\.pem: cannot read"):
        _scan([GOOD], ca_file=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(InputError, match=r"CA file .*junk\.pem: no PEM certificate in it"):
        _scan([GOOD], ca_file=junk)


def test_no_endpoints_is_no_findings() -> None:
    assert _scan([]) == []


def test_a_refused_endpoint_is_one_error_finding_naming_it() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, never listen
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        closed = TlsEndpoint("127.0.0.1", port, "closed.test", "host-b")
        found = _scan([closed, closed], timeout=2)
    assert len(found) == 1
    finding = found[0]
    assert finding.control_id == "SCAN-001" and finding.status == Status.ERROR
    assert finding.resource.kind == ResourceKind.ENDPOINT
    assert finding.resource.host == "host-b" and finding.resource.endpoint == f"closed.test:{port}"
    assert finding.message == f"TLS endpoint closed.test:{port}: connection to 127.0.0.1:{port} refused"


def test_an_unresolvable_name_is_an_error_finding() -> None:
    found = _scan([TlsEndpoint("no-such-host.invalid", 443, None, None)], timeout=2)
    assert [(f.control_id, f.status, f.message) for f in found] == [
        ("SCAN-001", Status.ERROR, "TLS endpoint no-such-host.invalid:443: cannot resolve no-such-host.invalid")
    ]

"""The TLS scanner against real nginx servers on loopback: exact failing controls per server.

One scan_tls call covers every standard server (tests/tls_servers.py) plus endpoints that are
not TLS at all (a socket that never answers, an SSH banner, plain HTTP, a closed port), so
sslyze runs once for all of them. A second, smaller run checks the caller's settings (modern
profile, stricter HSTS and validity thresholds).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scanners.catalog import default_catalog
from scanners.findings import Finding, ResourceKind, Severity, Status
from scanners.findings_file import new_document, validate_document
from scanners.scanning import ScanContext, TlsEndpoint
from scanners.tls import scan_tls

if TYPE_CHECKING:
    from tests.tls_servers import RunningServer, TlsTestServers

# The servers come from this plugin's session fixture; importing the module here first would keep
# pytest from loading it as a plugin cleanly.
pytest_plugins = ["tests.tls_servers"]
pytestmark = pytest.mark.slow

TIMEOUT = 3.0
TLS_CONTROLS = {c.id for c in default_catalog().by_evaluator("tls")}
EXPECTED_FAILURES = {
    "weak": {"TLS-001", "TLS-002", "TLS-003", "TLS-004", "TLS-006", "TLS-015", "TLS-016"},
    "hardened": set(),
    "expired": {"TLS-005"},
    "wrong-name": {"TLS-006"},
    # No current verifier accepts a SHA-1 signature, so the chain is untrusted as well.
    "sha1": {"TLS-006", "TLS-008"},
    "weak-key": {"TLS-007"},
    "no-stapling": {"TLS-013"},
    "tls13-only": set(),
}
# Only certificates with an OCSP responder URL (hardened, no-stapling) make TLS-013 applicable.
EXPECTED_NOT_APPLICABLE = {name: {"TLS-013"} for name in ("weak", "expired", "wrong-name", "sha1", "weak-key")} | {
    "hardened": set(),
    "no-stapling": set(),
    "tls13-only": {"TLS-009", "TLS-010", "TLS-013", "TLS-014"},
}


@dataclass
class ScanRun:
    findings: list[Finding] = field(default_factory=list)
    # Seconds from the start of the scan to the first finding of each endpoint label.
    first_seen: dict[str, float] = field(default_factory=dict)

    def of(self, endpoint: TlsEndpoint) -> dict[str, Finding]:
        found = [f for f in self.findings if f.resource.endpoint == endpoint.label]
        by_control = {f.control_id: f for f in found}
        assert len(by_control) == len(found), f"duplicate findings for {endpoint.label}"
        return by_control


def _scan(endpoints: list[TlsEndpoint], **kwargs: object) -> ScanRun:
    run = ScanRun()
    start = time.monotonic()

    def emit(finding: Finding) -> None:
        run.findings.append(finding)
        run.first_seen.setdefault(str(finding.resource.endpoint), time.monotonic() - start)

    scan_tls(ScanContext(default_catalog(), emit=emit), endpoints, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    return run


@dataclass(frozen=True)
class NotTls:
    silent: TlsEndpoint
    ssh: TlsEndpoint
    closed: TlsEndpoint


@contextlib.contextmanager
def _listener(answer: bytes | None) -> Iterator[int]:
    """A real TCP listener: sends ``answer`` to every client, or (None) accepts and stays silent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    clients: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            clients.append(client)
            if answer is not None:
                with contextlib.suppress(OSError):
                    client.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for client in clients:
            client.close()
        server.close()


@pytest.fixture(scope="module")
def not_tls() -> Iterator[NotTls]:
    with _listener(None) as silent, _listener(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n") as ssh:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed = unused.getsockname()[1]
        yield NotTls(
            TlsEndpoint("127.0.0.1", silent, "silent.preaudit.test", "testhost"),
            TlsEndpoint("127.0.0.1", ssh, "ssh.preaudit.test", "testhost"),
            TlsEndpoint("127.0.0.1", closed, "closed.preaudit.test", "testhost"),
        )


@pytest.fixture(scope="module")
def intermediate(tls_test_servers: TlsTestServers, not_tls: NotTls) -> ScanRun:
    endpoints = [server.endpoint() for server in tls_test_servers.servers.values()]
    endpoints += [not_tls.silent, not_tls.ssh, not_tls.closed]
    return _scan(endpoints, ca_file=tls_test_servers.ca_file)


def _statuses(run: ScanRun, server: RunningServer, status: Status) -> set[str]:
    return {cid for cid, f in run.of(server.endpoint()).items() if f.status == status}


@pytest.mark.parametrize("name", sorted(EXPECTED_FAILURES))
def test_each_server_fails_exactly_its_controls(
    intermediate: ScanRun, tls_test_servers: TlsTestServers, name: str
) -> None:
    server = tls_test_servers[name]
    findings = intermediate.of(server.endpoint())
    assert set(findings) == TLS_CONTROLS, f"{name}: one finding per TLS control"
    assert _statuses(intermediate, server, Status.FAIL) == EXPECTED_FAILURES[name]
    assert _statuses(intermediate, server, Status.NOT_APPLICABLE) == EXPECTED_NOT_APPLICABLE[name]
    assert _statuses(intermediate, server, Status.ERROR) == set()
    passed = TLS_CONTROLS - EXPECTED_FAILURES[name] - EXPECTED_NOT_APPLICABLE[name]
    assert _statuses(intermediate, server, Status.PASS) == passed


def test_hardened_server_passes_every_control(intermediate: ScanRun, tls_test_servers: TlsTestServers) -> None:
    findings = intermediate.of(tls_test_servers["hardened"].endpoint())
    assert {cid: f.status for cid, f in findings.items()} == dict.fromkeys(TLS_CONTROLS, Status.PASS)
    stapling = findings["TLS-013"].evidence.observed
    assert stapling["stapled"] is True and stapling["certificate_status"] == "good" and stapling["trusted"] is True
    assert findings["TLS-016"].evidence.observed == {"server": "nginx", "x-powered-by": None}
    assert findings["TLS-006"].evidence.expected == {"trusted_by": "CA file ca.crt", "name": "hardened.preaudit.test"}


def test_weak_server_evidence_says_what_was_seen_and_expected(
    intermediate: ScanRun, tls_test_servers: TlsTestServers
) -> None:
    server = tls_test_servers["weak"]
    findings = intermediate.of(server.endpoint())
    protocols = findings["TLS-001"]
    assert protocols.evidence.observed == ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert protocols.evidence.expected == ["TLSv1.2", "TLSv1.3"]
    assert "tls_versions" in protocols.evidence.details["mozilla_deviations"]
    assert protocols.severity == Severity.HIGH
    suites = findings["TLS-002"]
    # ALL:@SECLEVEL=0 offers anonymous ECDH suites: broken, so the finding is raised to high
    assert suites.severity == Severity.HIGH
    assert "TLS_ECDH_anon_WITH_AES_128_CBC_SHA" in suites.evidence.details["broken"]
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in suites.evidence.details["offending"]
    assert set(findings["TLS-003"].evidence.details["offending"]) == {"X448", "secp521r1"}
    assert findings["TLS-004"].message.endswith("no Strict-Transport-Security header")
    assert "leaf server certificate has no subjectAltName" in findings["TLS-006"].message
    assert findings["TLS-016"].evidence.observed["server"].startswith("nginx/")
    assert len(findings["TLS-015"].evidence.details["missing"]) == 3
    for finding in findings.values():
        assert finding.resource.kind == ResourceKind.ENDPOINT
        assert finding.resource.host == "testhost" and finding.resource.endpoint == f"weak.preaudit.test:{server.port}"
        assert finding.scanner == "tls" and finding.message.startswith(f"weak.preaudit.test:{server.port}: ")


def test_certificate_faults_are_reported_once_by_the_right_control(
    intermediate: ScanRun, tls_test_servers: TlsTestServers
) -> None:
    expired = intermediate.of(tls_test_servers["expired"].endpoint())
    assert expired["TLS-005"].severity == Severity.HIGH and "expired on" in expired["TLS-005"].message
    # sslyze's path validation fails because of the date; that deviation belongs to TLS-005
    assert "certificate_path_validation" in expired["TLS-005"].evidence.details["mozilla_deviations"]
    assert "mozilla_deviations" not in expired["TLS-006"].evidence.details
    wrong = intermediate.of(tls_test_servers["wrong-name"].endpoint())["TLS-006"]
    assert wrong.evidence.observed["names"] == ["other.preaudit.test"]
    assert "no matching subjectAltName" in wrong.message
    sha1 = intermediate.of(tls_test_servers["sha1"].endpoint())
    assert sha1["TLS-008"].evidence.observed["leaf"] == "ecdsa-with-SHA1"
    assert "Forbidden signature algorithm: ecdsa-with-SHA1" in sha1["TLS-006"].message
    weak_key = intermediate.of(tls_test_servers["weak-key"].endpoint())["TLS-007"]
    assert weak_key.evidence.observed == {"type": "rsa", "bits": 1024}
    assert "rsa_key_size" in weak_key.evidence.details["mozilla_deviations"]
    unstapled = intermediate.of(tls_test_servers["no-stapling"].endpoint())["TLS-013"]
    assert unstapled.evidence.observed == {"ocsp_url": "http://127.0.0.1:9/ocsp", "stapled": False}


def test_endpoints_that_are_not_tls_become_one_error_finding_each_within_the_timeout(
    intermediate: ScanRun, tls_test_servers: TlsTestServers, not_tls: NotTls
) -> None:
    expected = {
        not_tls.silent: f"accepted the connection but sent no TLS answer within {TIMEOUT:g} s",
        not_tls.ssh: "not TLS: it answered with an SSH banner",
        not_tls.closed: f"connection to 127.0.0.1:{not_tls.closed.port} refused",
        tls_test_servers["plain-http"].endpoint(): "not TLS: it answered in plain HTTP",
    }
    for endpoint, reason in expected.items():
        findings = list(intermediate.of(endpoint).values())
        assert [(f.control_id, f.status) for f in findings] == [("SCAN-001", Status.ERROR)]
        assert findings[0].message == f"TLS endpoint {endpoint.label}: {reason}"
        assert findings[0].resource.host == "testhost"
        # the scan timeout bounds how long an endpoint that never answers can take
        assert intermediate.first_seen[endpoint.label] < TIMEOUT + 1.0


def test_findings_make_a_valid_findings_document(intermediate: ScanRun) -> None:
    document = new_document(default_catalog(), scanners=["tls"])
    document.findings = intermediate.findings
    validate_document(document.to_dict())
    assert len({f.fingerprint for f in intermediate.findings}) == len(intermediate.findings)


def test_settings_change_the_verdicts(tls_test_servers: TlsTestServers) -> None:
    hardened, only13 = tls_test_servers["hardened"], tls_test_servers["tls13-only"]
    run = _scan(
        [hardened.endpoint(), only13.endpoint()],
        ca_file=tls_test_servers.ca_file,
        profile="modern",
        hsts_min_age=63072001,
        min_days_valid=365,
    )
    assert _statuses(run, hardened, Status.FAIL) == {"TLS-001", "TLS-002", "TLS-004", "TLS-005"}
    assert _statuses(run, only13, Status.FAIL) == {"TLS-004", "TLS-005"}
    assert run.of(hardened.endpoint())["TLS-001"].evidence.expected == ["TLSv1.3"]
    assert run.of(hardened.endpoint())["TLS-005"].severity == Severity.MEDIUM


def test_without_the_ca_file_the_test_ca_is_not_trusted(tls_test_servers: TlsTestServers) -> None:
    hardened = tls_test_servers["hardened"]
    trust = _scan([hardened.endpoint()]).of(hardened.endpoint())["TLS-006"]
    assert trust.status == Status.FAIL and trust.evidence.expected["trusted_by"] == "system trust store"


def test_nginx_servers_are_stopped_on_exit(tls_test_servers: TlsTestServers, tmp_path: Path) -> None:
    from tests.tls_servers import running_nginx_servers

    spec = tls_test_servers["hardened"].spec
    with running_nginx_servers([spec], tmp_path) as servers:
        port = servers["hardened"].port
        pid = int((tmp_path / "hardened" / "nginx.pid").read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)

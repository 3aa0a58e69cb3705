"""The findings model: fingerprints from content, severities, JSON documents validated by schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status, utcnow
from scanners.findings_file import (
    FindingsStream,
    new_document,
    read_document,
    read_stream,
    validate_document,
    write_document,
)


def _finding(**overrides: object) -> Finding:
    base = dict(
        control_id="SSH-001",
        title="SSH root login is disabled",
        severity=Severity.HIGH,
        status=Status.FAIL,
        resource=Resource(ResourceKind.FILE, host="sim-1", path="/etc/ssh/sshd_config", line=12),
        scanner="host",
        evidence=Evidence(observed="yes", expected="no"),
        references={"soc2": ["CC6.1"], "iso27001": ["A.8.2"]},
    )
    base.update(overrides)
    return Finding(**base)  # type: ignore[arg-type]


def test_fingerprint_ignores_line_numbers_and_time() -> None:
    a = _finding()
    moved = _finding(
        resource=Resource(ResourceKind.FILE, host="sim-1", path="/etc/ssh/sshd_config", line=40),
        observed_at=utcnow() + timedelta(days=3),
        message="other words",
    )
    assert a.fingerprint == moved.fingerprint
    assert len(a.fingerprint) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"control_id": "SSH-002"},
        {"rule": "B602"},
        {"discriminator": "sha256:abc"},
        {"resource": Resource(ResourceKind.FILE, host="sim-2", path="/etc/ssh/sshd_config", line=12)},
        {"resource": Resource(ResourceKind.FILE, host="sim-1", path="/etc/ssh/sshd_config.d/x.conf", line=12)},
    ],
)
def test_fingerprint_changes_with_content(change: dict[str, object]) -> None:
    assert _finding().fingerprint != _finding(**change).fingerprint


def test_default_score_follows_severity_and_bounds_are_enforced() -> None:
    assert _finding(severity=Severity.CRITICAL).score == 9.5
    assert _finding(severity=Severity.INFO).score == 0.0
    assert [s.rank for s in (Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)] == [
        0,
        1,
        2,
        3,
        4,
    ]
    with pytest.raises(ValueError, match="outside 0-10"):
        _finding(score=11.0)
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        Severity.parse("severe")
    assert Severity.parse(" High ") is Severity.HIGH


def test_round_trip_through_a_validated_document(tmp_path: Path) -> None:
    findings = [
        _finding(),
        _finding(
            control_id="TLS-001",
            resource=Resource(ResourceKind.ENDPOINT, host="sim-1", endpoint="127.0.0.1:443"),
            severity=Severity.MEDIUM,
            status=Status.PASS,
        ),
        _finding(
            control_id="DEP-001",
            resource=Resource(ResourceKind.PACKAGE, path="requirements.txt", package="pyyaml", version="5.3"),
            rule="PYSEC-2021-142",
            references={"soc2": ["CC7.1"], "iso27001": ["A.8.8"], "cve": ["CVE-2020-14343"]},
        ),
    ]
    document = new_document(default_catalog(), hosts=["sim-1"], scanners=["host", "tls"])
    document.findings = findings
    path = tmp_path / "findings.json"
    write_document(path, document)
    loaded = read_document(path)
    assert {f.fingerprint: f.to_dict() for f in loaded.findings} == {f.fingerprint: f.to_dict() for f in findings}
    assert loaded.scan.hosts == ["sim-1"]
    assert loaded.catalog["digest"] == default_catalog().digest
    # Sorted worst first.
    assert [f.severity for f in loaded.findings] == sorted((f.severity for f in findings), key=lambda s: -s.rank)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["findings"][0].update(severity="severe"), "findings/0/severity"),
        (lambda d: d["findings"][0].pop("fingerprint"), "'fingerprint' is a required property"),
        (lambda d: d["findings"][0]["resource"].update(kind="planet"), "findings/0/resource/kind"),
        (lambda d: d["findings"][0].update(score=12), "findings/0/score"),
        (lambda d: d.update(schema="other"), "schema"),
        (lambda d: d["findings"][0]["references"].update(pci=["1.1"]), "findings/0/references"),
    ],
)
def test_schema_rejects_malformed_documents(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    document = new_document(default_catalog())
    document.findings = [_finding()]
    data = json.loads(json.dumps(document.to_dict()))
    validate_document(data)
    mutate(data)
    with pytest.raises(InputError, match=message):
        validate_document(data)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not JSON"), (b"\xff\xfe\x00", "cannot read"), (b"[]", "not a valid findings document")],
)
def test_reading_bad_files_is_a_clear_input_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_document(path)
    with pytest.raises(InputError, match="no such findings file"):
        read_document(tmp_path / "missing.json")


def test_stream_keeps_complete_lines_and_skips_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "findings.jsonl"
    with FindingsStream(path) as stream:
        stream.write(_finding())
        stream.write(_finding(control_id="SSH-002"))
    with path.open("a") as handle:
        handle.write('{"control_id": "SSH-0')  # process killed mid-write
    assert [f.control_id for f in read_stream(path)] == ["SSH-001", "SSH-002"]


def test_resource_label_is_readable() -> None:
    assert _finding().resource.label() == "sim-1:/etc/ssh/sshd_config:12"
    pkg = Resource(ResourceKind.PACKAGE, path="requirements.txt", package="pyyaml", version="5.3")
    assert pkg.label() == "requirements.txt:pyyaml==5.3"
    assert replace(pkg, version=None).label() == "requirements.txt:pyyaml"

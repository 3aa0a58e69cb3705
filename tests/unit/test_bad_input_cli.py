"""Bad input through the real command line: one clear line on stderr, the documented exit code,
no traceback, and nothing written or lost."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from scanners.catalog import default_catalog
from scanners.findings import Resource, ResourceKind, Status
from scanners.findings_file import new_document, write_document

PREAUDIT = str(Path(sys.executable).parent / "preaudit")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [PREAUDIT, *args], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("preaudit: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def findings(tmp_path: Path) -> Path:
    document = new_document(default_catalog(), hosts=["sim-1"])
    document.findings = [
        default_catalog().get("SSH-001").finding(Status.FAIL, Resource(ResourceKind.HOST, host="sim-1"), "host")
    ]
    path = tmp_path / "findings.json"
    write_document(path, document)
    return path


def test_malformed_catalog_names_file_and_control(tmp_path: Path) -> None:
    bad = tmp_path / "catalog"
    bad.mkdir()
    (bad / "mine.yml").write_text(yaml.safe_dump({"area": "x", "controls": [{"id": "X-001", "title": "t"}]}))
    result = _run("catalog", "list", env={"PREAUDIT_CATALOG_DIR": str(bad)})
    _one_line_error(result, 2, "catalog mine.yml: control X-001: missing key(s)")


@pytest.mark.parametrize(
    ("waivers", "fragment"),
    [
        ("waivers: [{control: SSH-001}]", "waiver 1: missing justification, approver, expires"),
        ("waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: 2027-02-30}", "invalid value"),
        ("waivers: [", "invalid YAML"),
    ],
    ids=["missing-fields", "invalid-date", "not-yaml"],
)
def test_malformed_waiver_file(tmp_path: Path, findings: Path, waivers: str, fragment: str) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text(waivers)
    out = tmp_path / "out"
    _one_line_error(_run("report", str(findings), "--waivers", str(path), "--out", str(out)), 2, fragment)
    assert not out.exists(), "nothing may be written when the input is refused"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b'{"schema": 1', "not JSON"), (b"[]", "not a valid findings document"), (b"\xff\xfe", "cannot read")],
    ids=["truncated", "wrong-shape", "not-utf8"],
)
def test_malformed_baseline(tmp_path: Path, findings: Path, content: bytes, fragment: str) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(content)
    _one_line_error(
        _run("report", str(findings), "--baseline", str(baseline), "--out", str(tmp_path / "o")), 2, fragment
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--today", "2026-02-30"],
        ["--period", "2026-06-01..2026-05-01"],
        ["--period", "last-year"],
    ],
    ids=["impossible-date", "reversed-period", "not-a-period"],
)
def test_invalid_dates(tmp_path: Path, findings: Path, args: list[str]) -> None:
    result = _run("report", str(findings), *args, "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_history_control_with_an_invalid_date(tmp_path: Path) -> None:
    result = _run("history", "control", "SSH-002", "--since", "2026-13-01", "--store", f"sqlite:///{tmp_path}/h.db")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_corrupt_vulnerability_database_archive(tmp_path: Path) -> None:
    archive = tmp_path / "advisories.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    store = tmp_path / "vulndb"
    result = _run("vulndb", "import", str(archive), "--vuln-db", str(store))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (store.exists() and any(store.iterdir())), "a refused archive must not be half-imported"


def test_an_archive_of_something_else_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not advisories")
    archive = tmp_path / "junk.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(junk, arcname="junk")
    result = _run("vulndb", "import", str(archive), "--vuln-db", str(tmp_path / "vulndb"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_unknown_format_and_framework(tmp_path: Path, findings: Path) -> None:
    _one_line_error(_run("report", str(findings), "--format", "pdf", "--out", str(tmp_path / "o")), 2, "pdf")
    result = _run("report", str(findings), "--framework", "pci", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "pci" in result.stderr and "Traceback" not in result.stderr


def test_tampered_findings_file_is_refused(tmp_path: Path, findings: Path) -> None:
    data = json.loads(findings.read_text())
    data["findings"][0]["status"] = "probably-fine"
    findings.write_text(json.dumps(data))
    _one_line_error(_run("report", str(findings), "--out", str(tmp_path / "o")), 2, "findings/0/status")


@pytest.mark.parametrize(
    ("content", "limit", "fragment"),
    [
        ("[web\nhost1 ansible_host=192.0.2.1\n", None, "is malformed: Failed to parse inventory"),
        ("all:\n  childs:\n    web:\n      hosts: {host1: {}}\n", None, "Skipping unexpected key (childs)"),
        ("all:\n  hosts:\n    host1: {ansible_host: 192.0.2.1}\n", "nohost", "--limit nohost matches no host"),
        ("", None, "has no hosts"),
    ],
)
def test_scan_refuses_a_malformed_inventory_in_one_line(
    tmp_path: Path, content: str, limit: str | None, fragment: str
) -> None:
    inventory = tmp_path / ("hosts.ini" if content.startswith("[") else "hosts.yml")
    inventory.write_text(content)
    out = tmp_path / "out"
    result = _run("scan", "--inventory", str(inventory), *(["--limit", limit] if limit else []), "--out", str(out))
    _one_line_error(result, 2, fragment)
    assert not out.exists()


def test_lab_up_with_an_unknown_variant_names_the_known_ones() -> None:
    result = _run("lab", "up", "--hosts", "2", "--variants", "lab,bogus")
    _one_line_error(result, 2, "argument --variants: choose from lab, minimal (got 'lab,bogus')")

"""`preaudit report`, `verify-bundle` and `keys generate` as a user runs them: exit codes,
one-line errors, nothing lost when the gate fails, secrets never echoed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from tests.unit.report_fixtures import WAIVERS, fleet_document, fleet_findings, read, written

PREAUDIT = str(Path(sys.executable).parent / "preaudit")
PASSPHRASE = "an unguessable passphrase 4711"


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PREAUDIT_SIGNING_PASSPHRASE"}
    environment.update(env or {})
    return subprocess.run(
        [PREAUDIT, *map(str, args)], capture_output=True, text=True, check=False, env=environment, timeout=120
    )


@pytest.fixture
def scan(tmp_path: Path) -> dict[str, Path]:
    """A findings file, a baseline, a waiver file and raw outputs, as a scan leaves them."""
    catalog, findings = fleet_document(tmp_path)
    earlier = [f for f in fleet_findings(catalog) if f.control_id != "TLS-901"]
    document = read(findings)
    document.findings = earlier
    document.scan.id = "scan-baseline"
    baseline = written(tmp_path, document, "baseline.json")
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "sslyze.json").write_text('{"server_scan_results": []}')
    return {"findings": findings, "baseline": baseline, "waivers": tmp_path / "waivers.yml", "raw": tmp_path / "raw"}


def test_from_findings_to_a_verified_bundle(tmp_path: Path, scan: dict[str, Path]) -> None:
    keys = run("keys", "generate", "--out", tmp_path / "keys")
    assert keys.returncode == 0, keys.stderr
    assert "NOT encrypted" in keys.stdout and "fingerprint: sha256:" in keys.stdout
    out, bundle = tmp_path / "report", tmp_path / "evidence.tar.gz"
    result = run(
        "report", scan["findings"],
        "--out", out,
        "--baseline", scan["baseline"],
        "--waivers", scan["waivers"],
        "--framework", "soc2,iso27001",
        "--today", "2026-11-20",
        "--bundle", bundle,
        "--signing-key", tmp_path / "keys" / "preaudit-signing.key",
        "--raw", scan["raw"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {
        *("report.html", "findings.json", "report.json", "findings.csv", "requirements.csv", "findings.sarif"),
        *("junit.xml", "ocsf.json"),
    }
    assert "readiness: overall " in result.stdout and "; soc2 " in result.stdout and "cis-docker" not in result.stdout
    assert "since baseline: 1 new, 0 fixed, 0 regressed" in result.stdout
    assert "expired waivers: 1 (their findings fail again)" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert [fw["key"] for fw in report["readiness"]["frameworks"]] == ["soc2", "iso27001"]
    with tarfile.open(bundle) as archive:
        names = archive.getnames()
        handle = archive.extractfile("preaudit-evidence/metadata.json")
        assert handle is not None
        metadata = json.loads(handle.read())
    assert "preaudit-evidence/raw/sslyze.json" in names and "preaudit-evidence/input/waivers.yml" in names
    # scanned with a catalog of three more controls than the shipped one the CLI renders with
    assert metadata["catalog"]["controls"] == len(default_catalog()) + 3
    assert metadata["rendering_catalog"] == default_catalog().metadata()

    pinned = run("verify-bundle", bundle, "--public-key", tmp_path / "keys" / "preaudit-signing.pub")
    assert pinned.returncode == 0 and pinned.stdout.startswith("OK: ") and "pinned key sha256:" in pinned.stdout
    assert pinned.stderr == ""
    embedded = run("verify-bundle", bundle)
    assert embedded.returncode == 0 and "embedded key" in embedded.stdout
    assert embedded.stderr.startswith("warning: verified with the public key inside the bundle")

    # change one byte of one export inside the archive
    members = {}
    with tarfile.open(bundle) as archive:
        for m in archive.getmembers():
            handle = archive.extractfile(m)
            members[m] = handle.read() if handle else b""
    with tarfile.open(bundle, "w:gz") as archive:
        for m, data in members.items():
            if m.name.endswith("exports/report.html"):
                data = data.replace(b"Pre-audit", b"Pre-Audit", 1)
            archive.addfile(m, io.BytesIO(data))
    tampered = run("verify-bundle", bundle, "--public-key", tmp_path / "keys" / "preaudit-signing.pub")
    assert tampered.returncode == 1
    assert tampered.stdout.splitlines() == ["FAIL: modified: exports/report.html"]
    assert "failed verification (1 problem(s))" in tampered.stderr


def test_fail_on_severity_and_new_findings_exit_1_after_writing_everything(
    tmp_path: Path, scan: dict[str, Path]
) -> None:
    critical = run("report", scan["findings"], "--out", tmp_path / "a", "--fail-on", "critical", "--format", "json")
    assert critical.returncode == 1
    assert "failing: 1 failing finding(s) at or above critical: 1 critical" in critical.stderr
    assert (tmp_path / "a" / "findings.json").is_file() and (tmp_path / "a" / "report.json").is_file()
    waived = run(
        "report", scan["findings"], "--out", tmp_path / "b", "--format", "csv",
        "--waivers", scan["waivers"], "--today", "2026-11-20", "--fail-on", "info",
    )  # fmt: skip
    assert waived.returncode == 1
    assert "8 failing finding(s) at or above info" in waived.stderr  # 7 fail + 1 error; the waived one is not
    new = run("report", scan["findings"], "--out", tmp_path / "c", "--baseline", scan["baseline"], "--fail-on-new")
    assert new.returncode == 1 and "1 new failing finding(s) since baseline scan scan-baseline" in new.stderr
    same = run("report", scan["baseline"], "--out", tmp_path / "d", "--baseline", scan["baseline"], "--fail-on-new")
    assert same.returncode == 0, same.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "html,pdf"], "unknown format 'pdf'"),
        (["--framework", "pci-dss"], "unknown framework 'pci-dss'"),
        (["--today", "2026-02-30"], "--today '2026-02-30' is not a date"),
        (["--fail-on", "severe"], "--fail-on: unknown severity 'severe'"),
        (["--fail-on-new"], "--fail-on-new needs --baseline"),
        (["--bundle", "b.tar.gz"], "--bundle needs --signing-key"),
        (["--raw", "."], "--signing-key and --raw only make sense with --bundle"),
        (["--waivers", "BROKEN_WAIVERS"], "waiver 1: expires 'soon' is not a date"),
        (["--waivers", "UNKNOWN_CONTROL"], "unknown control NOPE-001"),
        (["--baseline", "NOT_JSON"], "not JSON (line 1, column 1"),
        (["--baseline", "MISSING"], "no such findings file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, scan: dict[str, Path], extra: list[str], message: str
) -> None:
    (tmp_path / "BROKEN_WAIVERS").write_text(
        "waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: soon}\n"
    )
    (tmp_path / "UNKNOWN_CONTROL").write_text(
        "waivers:\n  - {control: NOPE-001, justification: j, approver: a, expires: 2027-01-01}\n"
    )
    (tmp_path / "NOT_JSON").write_text("<findings/>")
    args = [str(tmp_path / a) if a.isupper() else a for a in extra]
    result = run("report", scan["findings"], "--out", tmp_path / "out", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("preaudit: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_export_never_overwrites_its_own_input(tmp_path: Path, scan: dict[str, Path]) -> None:
    before = scan["findings"].read_bytes()
    result = run("report", scan["findings"], "--out", scan["findings"].parent, "--format", "json")
    assert result.returncode == 2
    assert "findings.json would overwrite the input" in result.stderr and "choose another --out" in result.stderr
    assert scan["findings"].read_bytes() == before
    assert not (scan["findings"].parent / "report.json").exists()


def test_invalid_findings_document_exits_2(tmp_path: Path, scan: dict[str, Path]) -> None:
    data = json.loads(scan["findings"].read_text())
    data["findings"][0]["severity"] = "catastrophic"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    result = run("report", tmp_path / "bad.json", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "not a valid findings document at findings/0/severity" in result.stderr


def test_encrypted_signing_key_and_passphrase_custody(tmp_path: Path, scan: dict[str, Path]) -> None:
    env = {"PREAUDIT_SIGNING_PASSPHRASE": PASSPHRASE}
    generated = run("keys", "generate", "--out", tmp_path / "keys", env=env)
    assert generated.returncode == 0 and "(mode 0600, encrypted)" in generated.stdout
    assert PASSPHRASE not in generated.stdout + generated.stderr
    again = run("keys", "generate", "--out", tmp_path / "keys", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr

    key = tmp_path / "keys" / "preaudit-signing.key"
    args = ("report", scan["findings"], "--out", tmp_path / "out", "--format", "json")
    locked = run(*args, "--bundle", tmp_path / "b.tar.gz", "--signing-key", key)
    assert locked.returncode == 2 and "signing key is encrypted: set PREAUDIT_SIGNING_PASSPHRASE" in locked.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "b.tar.gz").exists()
    wrong = run(
        *args, "--bundle", tmp_path / "b.tar.gz", "--signing-key", key, env={"PREAUDIT_SIGNING_PASSPHRASE": "x"}
    )
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    signed = run(*args, "--bundle", tmp_path / "b.tar.gz", "--signing-key", key, env=env)
    assert signed.returncode == 0, signed.stderr
    assert PASSPHRASE not in signed.stdout + signed.stderr
    with tarfile.open(tmp_path / "b.tar.gz") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            content = handle.read() if handle else b""
            assert PASSPHRASE.encode() not in content and b"PRIVATE KEY" not in content, member.name


def test_verify_bundle_input_errors(tmp_path: Path) -> None:
    missing = run("verify-bundle", tmp_path / "nope.tar.gz")
    assert missing.returncode == 2 and "no such bundle" in missing.stderr
    (tmp_path / "k.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    (tmp_path / "b.tar.gz").write_bytes(b"\x1f\x8b garbage")
    bad_key = run("verify-bundle", tmp_path / "b.tar.gz", "--public-key", tmp_path / "k.pub")
    assert bad_key.returncode == 2 and "not a PEM public key" in bad_key.stderr
    garbage = run("verify-bundle", tmp_path / "b.tar.gz")
    assert garbage.returncode == 1 and "archive is damaged or not a tar.gz" in garbage.stdout

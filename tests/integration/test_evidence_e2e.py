"""From the lab to the auditor: scan -> report (every format, waivers, baseline) -> signed bundle ->
verify-bundle -> history store, a tampered bundle that verification rejects naming the file, and
none of the host's secrets anywhere along the way."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.findings import Status
from scanners.findings_file import read_document
from scanners.vulndb import import_snapshot
from tests.integration.conftest import Lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PREAUDIT = str(Path(sys.executable).parent / "preaudit")
SECRET_NAME = re.compile(r"SECRET|KEY|TOKEN|PASSW", re.IGNORECASE)
KNOWN_DEFAULTS = {str(v).lower() for v in default_catalog().get("SEC-003").check["denylist"]}
EXPORTS = (
    "report.html",
    "findings.json",
    "report.json",
    "findings.csv",
    "requirements.csv",
    "findings.sarif",
    "junit.xml",
    "ocsf.json",
)


def preaudit(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREAUDIT, *args], capture_output=True, text=True, timeout=timeout, check=False)


def rewrite_bundle(source: Path, target: Path, member: str, change: bytes) -> None:
    """A copy of the bundle with ``change`` appended to one member (what an attacker would do)."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for info in old.getmembers():
            data = old.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if data is not None and info.name == member:
                data += change
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)


def host_secrets(lab: Lab, host: str) -> set[str]:
    """The values of the host's .env and the lines of its TLS private key, as they are now."""
    env = lab.root_run(host, "cat /opt/montecarlo/.env")
    key = lab.root_run(host, "cat /etc/ssl/montecarlo/server.key")
    assert env.returncode == 0 and key.returncode == 0, env.stderr + key.stderr
    values = set()
    for line in env.stdout.splitlines():
        name, _, value = line.partition("=")
        if not value or name.lstrip().startswith("#"):
            continue
        if "://" in value:  # a URL's password
            values.add(value.split("://", 1)[-1].split("@", 1)[0].rsplit(":", 1)[-1])
        elif SECRET_NAME.search(name) and value.lower() not in KNOWN_DEFAULTS:
            # Not BIND=127.0.0.1 (discovery rightly reports nginx's upstream), nor a published
            # default such as "changeme" on a host not hardened yet (the catalog names it).
            values.add(value)
    values |= {line for line in key.stdout.splitlines() if line and not line.startswith("-----")}
    return {v for v in values if len(v) >= 8}


def leaks(secrets: set[str], texts: dict[str, str], roots: list[Path]) -> list[str]:
    """Where any of ``secrets`` appears: command output, files under ``roots``, members of tar.gz files."""
    found = [f"{where}: {secret[:4]}..." for where, text in texts.items() for secret in secrets if secret in text]
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            blobs = {str(path): path.read_bytes()}
            if path.name.endswith(".tar.gz"):
                with tarfile.open(path, "r:gz") as archive:
                    for info in archive.getmembers():
                        member = archive.extractfile(info) if info.isfile() else None
                        if member is not None:
                            blobs[f"{path}!{info.name}"] = member.read()
            found += [
                f"{where}: {secret[:4]}..." for where, data in blobs.items() for secret in secrets
                if secret.encode() in data
            ]  # fmt: skip
    return found


def test_lab_scan_to_verified_evidence_bundle_and_tampering_detected(lab: Lab, tmp_path: Path) -> None:
    host = lab.names[0]
    secrets = host_secrets(lab, host)
    assert len(secrets) >= 4  # the database password, the JWT secret, the API key, the key's lines
    db = tmp_path / "vulndb"
    import_snapshot(ROOT / "tests" / "data" / "advisories", db)

    # A baseline (the host checks only) and the full scan of the same host.
    base = preaudit(
        "scan",
        "--inventory",
        str(lab.inventory),
        "--limit",
        host,
        "--scanners",
        "host",
        "--out",
        str(tmp_path / "base"),
    )
    assert base.returncode == 0, base.stderr[-3000:]
    scan = preaudit(
        "scan",
        "--inventory",
        str(lab.inventory),
        "--limit",
        host,
        "--vuln-db",
        str(db),
        "--out",
        str(tmp_path / "scan"),
    )
    assert scan.returncode == 0, scan.stderr[-3000:]
    findings = tmp_path / "scan" / "findings.json"
    assert read_document(findings).scan.complete

    waivers = tmp_path / "waivers.yml"
    waivers.write_text(
        "waivers:\n"
        "  - control: CODE-001\n"
        f"    resources: ['{host}']\n"
        "    justification: admin.py is a deliberate sample of insecure code in the lab image.\n"
        "    approver: security@example.com\n"
        "    expires: 2099-12-31\n"
        "  - control: DEP-001\n"
        "    justification: Pins were to be upgraded by the end of 2020.\n"
        "    approver: security@example.com\n"
        "    expires: 2020-12-31\n"
    )
    keys = preaudit("keys", "generate", "--out", str(tmp_path / "keys"))
    assert keys.returncode == 0, keys.stderr
    bundle = tmp_path / "evidence.tar.gz"
    report = preaudit(
        "report",
        str(findings),
        "--out",
        str(tmp_path / "report"),
        "--baseline",
        str(tmp_path / "base" / "findings.json"),
        "--waivers",
        str(waivers),
        "--bundle",
        str(bundle),
        "--signing-key",
        str(tmp_path / "keys" / "preaudit-signing.key"),
        "--raw",
        str(tmp_path / "scan" / "raw"),
    )
    assert report.returncode == 0, report.stderr[-3000:]
    for name in EXPORTS:
        assert (tmp_path / "report" / name).is_file(), name
    assert "since baseline:" in report.stdout and "expired waivers: 1" in report.stdout
    exported = read_document(tmp_path / "report" / "findings.json")
    statuses = {(f.control_id, f.status) for f in exported.findings}
    assert ("CODE-001", Status.WAIVED) in statuses and ("CODE-001", Status.FAIL) not in statuses
    assert ("DEP-001", Status.FAIL) in statuses  # its waiver expired
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["diff"]["counts"]["new"] > 0  # the file scanners' findings are new since the baseline

    public = str(tmp_path / "keys" / "preaudit-signing.pub")
    verified = preaudit("verify-bundle", str(bundle), "--public-key", public)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {bundle}")
    with tarfile.open(bundle, "r:gz") as archive:
        names = archive.getnames()
    assert f"preaudit-evidence/raw/host_audit/{host}.json" in names
    assert "preaudit-evidence/input/findings.json" in names

    store = tmp_path / "history.sqlite"
    recorded = preaudit("history", "record", "--store", f"sqlite:///{store}", str(findings))
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    listed = preaudit("history", "--store", f"sqlite:///{store}", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr

    # No secret of the host in any output, file, export, bundle member or the store.
    outputs = {
        name: run.stdout + run.stderr
        for name, run in {"base": base, "scan": scan, "report": report, "record": recorded, "list": listed}.items()
    }
    assert leaks(secrets, outputs, [tmp_path / "scan", tmp_path / "base", tmp_path / "report", bundle, store]) == []

    tampered = tmp_path / "tampered.tar.gz"
    rewrite_bundle(bundle, tampered, f"preaudit-evidence/raw/host_audit/{host}.json", b"\n")
    rejected = preaudit("verify-bundle", str(tampered), "--public-key", public)
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    assert f"modified: raw/host_audit/{host}.json" in rejected.stdout
    assert rejected.stdout.count("FAIL:") == 1

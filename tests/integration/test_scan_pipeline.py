"""`preaudit scan` on the real lab fleet: seeded weaknesses found, hardened hosts clean of what
the roles fix, an unreachable host, Ctrl-C, and endpoints that hang or do not speak TLS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanners.catalog import default_catalog
from scanners.findings import Finding, Status
from scanners.findings_file import FindingsDocument, read_document, read_stream
from scanners.vulndb import import_snapshot
from tests.integration.conftest import Converged, Lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "scanners" / "lab" / "weaknesses.yml"
PREAUDIT = str(Path(sys.executable).parent / "preaudit")
WEAKNESSES: list[dict[str, Any]] = yaml.safe_load(MANIFEST.read_text())["weaknesses"]
FAILING = (Status.FAIL, Status.ERROR)


def site_roles() -> set[str]:
    """The roles playbooks/site.yml applies."""
    roles: set[str] = set()
    for play in yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text()):
        for entry in play.get("roles", []):
            roles.add(entry["role"] if isinstance(entry, dict) else str(entry))
    return roles


@dataclass
class Scan:
    rc: int
    stdout: str
    stderr: str
    out: Path
    seconds: float

    @property
    def document(self) -> FindingsDocument:
        return read_document(self.out / "findings.json")

    def on(self, host: str) -> list[Finding]:
        return [f for f in self.document.findings if f.resource.host == host]


def run_scan(out: Path, *args: str, timeout: float = 900) -> Scan:
    started = time.monotonic()
    result = subprocess.run(
        [PREAUDIT, "scan", "--out", str(out), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Scan(result.returncode, result.stdout, result.stderr, out, time.monotonic() - started)


@pytest.fixture(scope="session")
def vulndb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    location = tmp_path_factory.mktemp("vulndb")
    import_snapshot(ROOT / "tests" / "data" / "advisories", location)
    return location


@pytest.fixture(scope="module")
def fleet_scan(lab: Lab, converged: Converged, vulndb: Path, tmp_path_factory: pytest.TempPathFactory) -> Scan:
    """One scan of the whole fleet: the converged hosts and the last host with a fresh disk."""
    lab.fleet.reset_host(lab.names[-1])
    scan = run_scan(tmp_path_factory.mktemp("fleet-scan"), "--inventory", str(lab.inventory), "--vuln-db", str(vulndb))
    assert scan.rc == 0, scan.stderr[-3000:]
    return scan


def failing_keys(findings: list[Finding]) -> set[tuple[str, str | None, str | None]]:
    """What fails, independent of the host's name and ports: control, sub-rule, file."""
    return {(f.control_id, f.rule, f.resource.path) for f in findings if f.status in FAILING}


def test_scan_of_an_unhardened_host_finds_every_seeded_weakness(lab: Lab, fleet_scan: Scan) -> None:
    host = lab.names[-1]
    catalog = default_catalog()
    failing = {f.control_id for f in fleet_scan.on(host) if f.status is Status.FAIL}
    missed = [
        f"{w['id']} ({w['what']}): {control}"
        for w in WEAKNESSES
        for control in w["controls"]
        if control in catalog and control not in failing
    ]
    assert not missed, "seeded weaknesses the scan did not report:\n" + "\n".join(missed)


def test_every_control_the_weakness_manifest_names_is_in_the_catalog() -> None:
    """Fails (never skips) until the catalog has every control the lab manifest expects findings of."""
    catalog = default_catalog()
    missing = sorted({c for w in WEAKNESSES for c in w["controls"] if c not in catalog})
    assert not missing, (
        "scanners/lab/weaknesses.yml expects findings of controls the catalog does not define: " + ", ".join(missing)
    )


def test_the_scan_document_covers_the_fleet(lab: Lab, fleet_scan: Scan) -> None:
    document = fleet_scan.document
    assert document.scan.complete is True
    assert document.scan.hosts == sorted(lab.names)
    assert document.scan.vulndb is not None
    catalog = default_catalog()
    host_controls = {c.id for c in catalog.by_evaluator("host")}
    for host in lab.names:
        findings = fleet_scan.on(host)
        assert {f.control_id for f in findings if f.scanner == "host"} == host_controls, host
        assert {f.scanner for f in findings} >= {"host", "tls", "secrets", "code", "dependencies", "containers"}
        errors = [f"{f.control_id} {f.message}" for f in findings if f.status is Status.ERROR]
        assert not errors, errors
    raw = sorted(p.name for p in (fleet_scan.out / "raw" / "host_audit").iterdir())
    assert raw == sorted(f"{h}.json" for h in lab.names)
    audit = json.loads((fleet_scan.out / "raw" / "host_audit" / f"{lab.names[0]}.json").read_text())
    assert audit["facts"]["tls_ports"] == [443]
    # The stream holds exactly what the final file holds.
    streamed = read_stream(fleet_scan.out / "findings.jsonl")
    assert sorted(f.fingerprint for f in streamed) == sorted(f.fingerprint for f in document.findings)


def test_after_site_yml_only_what_no_applied_role_fixes_remains(
    lab: Lab, converged: Converged, fleet_scan: Scan
) -> None:
    catalog = default_catalog()
    roles = site_roles()
    fixed = catalog.remediated_by(roles)
    fresh = failing_keys(fleet_scan.on(lab.names[-1]))
    # secrets_hardening gives the weak JWT_SECRET and API_KEY random values, which the secret
    # scanner also reports as high-entropy strings: the platform keeps its secrets in a plaintext
    # .env (now root-only, SEC-001), and SEC-101 keeps saying so.
    generated = {("SEC-101", "Base64 High Entropy String", "/opt/montecarlo/.env")}
    expected = {key for key in fresh if key[0] not in fixed} | generated
    for host in converged.hosts:
        remaining = failing_keys(fleet_scan.on(host))
        still_failing = sorted(k for k in remaining if k[0] in fixed)
        assert not still_failing, f"{host}: controls of {sorted(roles)} still fail after site.yml: {still_failing}"
        assert remaining == expected, (
            f"{host}: unexpected remaining failures {sorted(remaining - expected)}, "
            f"missing {sorted(expected - remaining)}"
        )
    # What remains is what the applied roles do not own: code, pins, images, unowned files, ...
    remaining_controls = {key[0] for key in expected}
    assert {"CODE-001", "DEP-001", "SEC-101", "CTR-F-001", "OS-PRM-008"} <= remaining_controls
    assert not remaining_controls & fixed


def test_an_unreachable_host_is_one_error_and_the_others_complete(
    lab: Lab, vulndb: Path, tmp_path: Path, fleet_scan: Scan
) -> None:
    down = lab.names[-1]
    lab.fleet.stop_host(down)
    try:
        scan = run_scan(
            tmp_path / "scan", "--inventory", str(lab.inventory), "--vuln-db", str(vulndb), "--timeout", "5"
        )
    finally:
        lab.fleet.start_host(down)
    assert scan.rc == 0, scan.stderr[-3000:]
    document = scan.document
    assert document.scan.complete is True
    lost = scan.on(down)
    assert len(lost) == 1, [f.message for f in lost]
    assert (lost[0].control_id, lost[0].status) == ("SCAN-001", Status.ERROR)
    assert lost[0].message.startswith(f"{down}: unreachable: ")
    for host in lab.names[:-1]:
        assert failing_keys(scan.on(host)) == failing_keys(fleet_scan.on(host)), host
        assert len(scan.on(host)) == len(fleet_scan.on(host)), host


@pytest.fixture
def silent_endpoint() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung TLS server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_ctrl_c_leaves_the_stream_and_a_valid_incomplete_findings_file(
    lab: Lab, vulndb: Path, tmp_path: Path, silent_endpoint: int
) -> None:
    out = tmp_path / "scan"
    # The silent endpoint keeps the scan running for a minute whatever the hosts do.
    targets = ["--inventory", str(lab.inventory), "--tls", f"127.0.0.1:{silent_endpoint}"]
    process = subprocess.Popen(
        [PREAUDIT, "scan", "--out", str(out), "--no-progress", *targets, "--vuln-db", str(vulndb), "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        stream = out / "findings.jsonl"
        while not (stream.exists() and stream.stat().st_size > 0):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no finding within two minutes"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    document = read_document(out / "findings.json")
    assert document.scan.complete is False
    assert document.findings
    streamed = read_stream(stream)
    assert sorted(f.fingerprint for f in streamed) == sorted(f.fingerprint for f in document.findings)
    assert "INTERRUPTED" in stdout


def test_endpoints_that_hang_or_do_not_speak_tls_are_errors_within_the_timeout(
    lab: Lab, tmp_path: Path, silent_endpoint: int
) -> None:
    ssh = f"127.0.0.1:{lab.port(lab.names[0], 'ssh')}"
    hung = f"127.0.0.1:{silent_endpoint}"
    https = f"127.0.0.1:{lab.port(lab.names[0], 'https')}=montecarlo.lab"
    scan = run_scan(tmp_path / "scan", "--tls", hung, ssh, https, "--timeout", "5", timeout=120)
    assert scan.rc == 0, scan.stderr[-3000:]
    assert scan.seconds < 5 + 30, scan.seconds
    assert (tmp_path / "scan" / "findings.jsonl").exists()
    document = scan.document  # schema-validated
    errors = {f.resource.endpoint: f for f in document.findings if f.control_id == "SCAN-001"}
    assert set(errors) == {hung, ssh}
    assert errors[hung].message == f"TLS endpoint {hung}: accepted the connection but sent no TLS answer within 5 s"
    assert errors[ssh].message == f"TLS endpoint {ssh}: not TLS: it answered with an SSH banner"
    assert all(f.status is Status.ERROR for f in errors.values())
    # The endpoint that does speak TLS is scanned in the same run.
    lab_endpoint = f"montecarlo.lab:{lab.port(lab.names[0], 'https')}"
    assert {f.control_id for f in document.findings if f.resource.endpoint == lab_endpoint} >= {"TLS-001", "TLS-004"}


def test_a_hosts_docker_engine_is_checked_over_ssh(lab: Lab, tmp_path: Path) -> None:
    host = lab.names[0]
    scan = run_scan(
        tmp_path / "scan",
        "--inventory",
        str(lab.inventory),
        "--limit",
        host,
        "--scanners",
        "containers",
        "--docker-hosts",
    )
    assert scan.rc == 0, scan.stderr[-3000:]
    engine = f"ssh://{host}/var/run/docker.sock"
    runtime = [f for f in scan.on(host) if f.resource.endpoint == engine]
    assert runtime, "no finding from the host's Docker Engine"
    assert all(f.control_id.startswith("CTR-") and f.status is not Status.ERROR for f in runtime), [
        (f.control_id, f.message) for f in runtime
    ]
    # The same settings are judged statically from the fetched daemon.json.
    assert any(f.resource.path == "/etc/docker/daemon.json" for f in scan.on(host))

"""The host scanner's parsing: host_audit results (recorded on an unhardened lab host), ansible-runner
events, collected file archives and the target-side collection module."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from scanners.catalog import default_catalog
from scanners.errors import InputError
from scanners.findings import Finding, Resource, ResourceKind, Status
from scanners.host_scan import (
    HostCallbacks,
    HostFiles,
    InventoryHost,
    _EventHandler,
    audit_findings,
    load_inventory,
)
from scanners.pipeline import with_source
from scanners.scanning import TlsEndpoint, error_finding
from tests.unit.module_loader import library

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "data" / "host_audit" / "unhardened-lab-host.json"


host_files = library("host_files", uses=("preaudit_discovery",))


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


def test_every_host_control_of_the_catalog_becomes_one_finding_with_the_module_status() -> None:
    catalog = default_catalog()
    result = recorded()
    findings = audit_findings(catalog, "sim-1", result)
    host_ids = [c.id for c in catalog.by_evaluator("host")]
    assert [f.control_id for f in findings] == host_ids
    by_id = {f.control_id: f for f in findings}
    for cid, raw in result["controls"].items():
        if cid in by_id:
            assert by_id[cid].status.value == raw["status"], cid
    ssh = by_id["SSH-001"]
    assert (ssh.status, ssh.evidence.observed, ssh.scanner) == (Status.FAIL, "yes", "host")
    assert ssh.resource.kind is ResourceKind.HOST and ssh.resource.host == "sim-1"
    assert ssh.references == catalog.get("SSH-001").references_dict()
    # Controls the recorded module did not know (added to the catalog later) are errors, never passes.
    missing = set(host_ids) - set(result["controls"])
    assert all(by_id[cid].status is Status.ERROR for cid in missing)


def test_not_applicable_keeps_the_reason_as_evidence_and_errors_stay_errors_of_their_control() -> None:
    result = copy.deepcopy(recorded())
    result["controls"]["SSH-002"] = {
        "status": "error",
        "observed": None,
        "expected": None,
        "message": "sshd -T failed: bad config",
        "details": {},
    }
    findings = {f.control_id: f for f in audit_findings(default_catalog(), "sim-1", result)}
    na = findings["OS-KRN-002"]
    assert na.status is Status.NOT_APPLICABLE
    assert "kernel has no kernel.yama.ptrace_scope" in na.message
    error = findings["SSH-002"]
    assert (error.status, error.control_id, error.evidence.observed) == (
        Status.ERROR,
        "SSH-002",
        "sshd -T failed: bad config",
    )
    del result["controls"]["SSH-003"]
    assert {f.control_id: f for f in audit_findings(default_catalog(), "h", result)}["SSH-003"].status is Status.ERROR


def test_a_check_over_discovered_files_gives_one_finding_per_file_naming_its_source() -> None:
    result = copy.deepcopy(recorded())
    item = {
        "status": "fail",
        "observed": {"JWT_SECRET": "weak: a known default value"},  # pragma: allowlist secret
        "expected": {"JWT_SECRET": ">= 32 bytes, not a default value"},
        "message": "weak or missing: JWT_SECRET",
        "details": {"source": "systemd:simsvc.service EnvironmentFile= /etc/systemd/system/simsvc.service:10"},
        "path": "/srv/simsvc/.env",
        "source": "systemd:simsvc.service EnvironmentFile= /etc/systemd/system/simsvc.service:10",
    }
    stray = dict(item, path="/home/legacy/old-deploy/.env", source="sweep:/home/legacy", details={})
    result["controls"]["SEC-003"] = {"status": "fail", "observed": {}, "expected": {}, "items": [item, stray]}
    findings = [f for f in audit_findings(default_catalog(), "sim-1", result) if f.control_id == "SEC-003"]
    assert [(f.resource.kind, f.resource.path, f.status) for f in findings] == [
        (ResourceKind.FILE, "/srv/simsvc/.env", Status.FAIL),
        (ResourceKind.FILE, "/home/legacy/old-deploy/.env", Status.FAIL),
    ]
    assert findings[0].evidence.details["source"] == item["source"]
    assert findings[0].fingerprint != findings[1].fingerprint

    result["controls"]["SEC-003"] = {"status": "not_applicable", "message": "discovery found no environment file"}
    [na] = [f for f in audit_findings(default_catalog(), "sim-1", result) if f.control_id == "SEC-003"]
    assert (na.resource.kind, na.status, na.evidence.observed) == (
        ResourceKind.HOST,
        Status.NOT_APPLICABLE,
        "discovery found no environment file",
    )


def test_a_result_without_controls_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'controls'"):
        audit_findings(default_catalog(), "sim-1", {"host": {}})


def _event(
    kind: str, host: str, action: str = "host_audit", res: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    result = {**(res or {}), **fields}
    return {"event": kind, "event_data": {"host": host, "task_action": action, "res": result, "duration": 0.7}}


def _archive(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


class Recorder:
    def __init__(self) -> None:
        self.findings: list[tuple[str, Finding]] = []
        self.done: list[str] = []
        self.files: dict[str, HostFiles] = {}
        self.audits: list[str] = []

    def callbacks(self) -> HostCallbacks:
        return HostCallbacks(
            emit=lambda host, f: self.findings.append((host, f)),
            on_audit=lambda host, _r, _o: self.audits.append(host),
            on_files=lambda host, files: self.files.__setitem__(host, files),
            on_done=lambda host, _o: self.done.append(host),
        )


def test_events_become_findings_per_host_as_they_arrive() -> None:
    catalog = default_catalog()
    recorder = Recorder()
    hosts = [InventoryHost("a"), InventoryHost("b"), InventoryHost("c"), InventoryHost("d")]
    handler = _EventHandler(catalog, hosts, recorder.callbacks(), audit=True, evaluate=True, collect=True)

    assert handler(_event("runner_on_start", "a")) is False
    assert handler(_event("runner_on_ok", "a", res=recorded())) is False  # never written to artifacts
    assert recorder.audits == ["a"] and recorder.done == []  # files still to come
    count = len(catalog.by_evaluator("host"))
    assert len(recorder.findings) == count

    archive = _archive({"opt/montecarlo/.env": b"A=1\n"})
    handler(_event("runner_on_ok", "a", "host_files", archive=archive, files=[], not_collected=[], unmatched=[]))
    assert recorder.done == ["a"]
    assert recorder.files["a"].archive

    handler(_event("runner_on_unreachable", "b", msg="ssh: connect to host 127.0.0.1 port 2222: Connection refused"))
    errors = [f for h, f in recorder.findings if h == "b"]
    assert len(errors) == 1 and errors[0].control_id == "SCAN-001" and errors[0].status is Status.ERROR
    assert "b: unreachable: ssh: connect to host" in errors[0].message
    assert recorder.done == ["a", "b"]

    handler(_event("runner_on_failed", "c", msg="MODULE FAILURE\nSee stdout/stderr for the exact error"))
    handler(_event("runner_on_ok", "c", "host_files", archive=archive, files=[], not_collected=[], unmatched=[]))
    c_findings = [f for h, f in recorder.findings if h == "c"]
    assert [f.control_id for f in c_findings] == ["SCAN-001"]
    assert "host audit failed: See stdout/stderr" in c_findings[0].message
    assert "c" in recorder.files and recorder.done[-1] == "c"

    # d never reported (the run died): one error at the end, unless the scan was cancelled.
    handler.finish_all("failed", cancelled=False)
    d_findings = [f for h, f in recorder.findings if h == "d"]
    assert [f.message for f in d_findings] == [
        "d: no result for the host audit and file collection (ansible run failed)"
    ]
    assert recorder.done == ["a", "b", "c", "d"]


def test_a_cancelled_run_adds_no_error_for_hosts_it_did_not_reach() -> None:
    recorder = Recorder()
    handler = _EventHandler(
        default_catalog(), [InventoryHost("a")], recorder.callbacks(), audit=True, evaluate=True, collect=False
    )
    handler.finish_all("canceled", cancelled=True)
    assert recorder.findings == [] and recorder.done == ["a"]


def test_facts_only_audit_emits_no_control_findings() -> None:
    recorder = Recorder()
    handler = _EventHandler(
        default_catalog(), [InventoryHost("a")], recorder.callbacks(), audit=True, evaluate=False, collect=False
    )
    handler(_event("runner_on_ok", "a", res={"controls": {}, "host": {"tls_ports": [443]}}))
    assert recorder.findings == [] and recorder.audits == ["a"] and recorder.done == ["a"]


def test_host_files_extract_refuses_links_and_skipped_entries_become_errors(tmp_path: Path) -> None:
    files = HostFiles.from_result(
        "sim-1",
        {
            "archive": _archive({"opt/montecarlo/.env": b"JWT_SECRET=x\n", "etc/docker/daemon.json": b"{}"}),
            "files": [{"path": "/opt/montecarlo/.env"}],
            "not_collected": [
                {"path": "/opt/montecarlo/model.bin", "reason": "52428800 bytes, over the 10485760-byte limit"},
                {"path": "/etc/ssl/certs/x.pem", "reason": "symbolic link; not followed", "quiet": True},
            ],
            "unmatched": ["/etc/ssl/**/*.key"],
        },
    )
    target = tmp_path / "copy"
    files.extract(target)
    assert (target / "opt/montecarlo/.env").read_bytes() == b"JWT_SECRET=x\n"
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    errors = files.skipped_findings(default_catalog(), "host-files")
    assert [(f.control_id, f.resource.host, f.resource.path) for f in errors] == [
        ("SCAN-001", "sim-1", "/opt/montecarlo/model.bin")
    ]
    assert "archive" not in files.listing()

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("etc/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    evil = HostFiles("sim-1", buffer.getvalue(), [], [], [])
    with pytest.raises(ValueError, match="not a regular file"):
        evil.extract(tmp_path / "evil")
    with pytest.raises(ValueError, match="not base64"):
        HostFiles.from_result("sim-1", {"archive": "***"})


def test_collection_module_matches_hidden_files_across_directories_and_never_follows_links(tmp_path: Path) -> None:
    tree = tmp_path / "opt" / "mc"
    (tree / "app" / "__pycache__").mkdir(parents=True)
    (tree / ".git").mkdir()
    (tree / "venv").mkdir()
    (tree / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tree / ".env").write_text("A=1\n")
    (tree / "app" / "x.py").write_text("print(1)\n")
    (tree / "app" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tree / ".git" / "config").write_text("[core]\n")
    (tree / "big.bin").write_bytes(b"\0" * 2048)
    (tree / "link.py").symlink_to(tree / "app" / "x.py")
    os.mkfifo(tree / "pipe")
    ssl = tmp_path / "ssl"
    (ssl / "private").mkdir(parents=True)
    (ssl / "private" / "server.key").write_text("KEY\n")
    (ssl / "openssl.cnf").write_text("x\n")

    data, files, not_collected, unmatched = host_files.collect(
        [f"{tree}/**", f"{ssl}/**/*.key", f"{ssl}/**/*.pem", f"{tmp_path}/nothing/here.txt"],
        max_file_bytes=1024,
        max_total_bytes=1 << 20,
        max_files=100,
    )
    assert sorted(f["path"] for f in files) == sorted([f"{tree}/.env", f"{tree}/app/x.py", f"{ssl}/private/server.key"])
    reasons = {item["path"]: item["reason"] for item in not_collected}
    assert reasons[f"{tree}/big.bin"] == "2048 bytes, over the 1024-byte limit"
    assert reasons[f"{tree}/link.py"] == "symbolic link; not followed"
    assert reasons[f"{tree}/pipe"] == "not a regular file"
    assert unmatched == [f"{ssl}/**/*.pem", f"{tmp_path}/nothing/here.txt"]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == sorted(p.lstrip("/") for p in (f"{tree}/.env", f"{tree}/app/x.py", f"{ssl}/private/server.key"))

    _, files, not_collected, _ = host_files.collect([f"{tree}/**"], 1024, 1 << 20, max_files=1)
    assert len(files) == 1
    assert any(item["reason"] == "over the limit of 1 files" for item in not_collected)


def test_collection_module_fetches_what_discovery_names_with_its_source(tmp_path: Path) -> None:
    env = tmp_path / "srv" / ".env"
    env.parent.mkdir()
    env.write_text("A=1\n")
    extra = tmp_path / "etc" / "x.conf"
    extra.parent.mkdir()
    extra.write_text("x\n")
    named = [(str(env), "systemd:app.service EnvironmentFile= /u:3"), (str(tmp_path / "gone.env"), "sweep:/srv")]
    _, files, not_collected, unmatched = host_files.collect([str(extra), str(env)], 1024, 1 << 20, 10, named=named)
    assert [(f["path"], f.get("source")) for f in files] == [
        (str(env), "systemd:app.service EnvironmentFile= /u:3"),
        (str(extra), None),
    ]
    assert not_collected == [] and unmatched == []


def test_discovered_files_keep_their_source_and_a_truncated_sweep_is_an_error() -> None:
    platform = {
        "sweep": {
            "truncated": True,
            "hit": ["max_files"],
            "incomplete": ["/usr/local"],
            "examined": 20000,
            "bounds": {"max_files": 20000},
        }
    }
    files = HostFiles.from_result(
        "sim-1",
        {
            "archive": _archive({"srv/app/.env": b"A=1\n"}),
            "files": [{"path": "/srv/app/.env", "source": "sweep:/srv"}, {"path": "/etc/x.conf"}],
            "platform": platform,
        },
    )
    assert files.sources() == {"/srv/app/.env": "sweep:/srv"}
    assert files.listing()["platform"] == platform
    [error] = files.discovery_findings(default_catalog(), "host-files")
    assert (error.control_id, error.status, error.resource.host) == ("SCAN-001", Status.ERROR, "sim-1")
    assert error.message == (
        "sim-1: discovery stopped at max_files (20000) after 20000 files: /usr/local not searched completely "
        "(raise the host's preaudit_discovery_max_files, or narrow preaudit_discovery_roots)"
    )
    platform["sweep"]["truncated"] = False
    assert files.discovery_findings(default_catalog(), "host-files") == []

    secret = error_finding(default_catalog(), "secrets", Resource(ResourceKind.FILE, "sim-1", "/srv/app/.env"), "x")
    annotated = with_source(secret, files.sources())
    assert annotated.evidence.details["source"] == "sweep:/srv"
    assert annotated.fingerprint == secret.fingerprint
    elsewhere = error_finding(default_catalog(), "secrets", Resource(ResourceKind.FILE, "sim-1", "/etc/x.conf"), "x")
    assert with_source(elsewhere, files.sources()) is elsewhere


def test_glob_translation() -> None:
    regex = host_files.pattern_regex("/etc/ssl/**/*.pem")
    assert regex.match("/etc/ssl/a.pem") and regex.match("/etc/ssl/certs/x/y.pem")
    assert not regex.match("/etc/ssl/a.pem.bak") and not regex.match("/etc/sslx/a.pem")
    assert host_files.static_prefix("/etc/ssl/**/*.pem") == "/etc/ssl"
    assert host_files.static_prefix("/etc/docker/daemon.json") == "/etc/docker/daemon.json"
    assert host_files.pattern_regex("/opt/requirements[!x].txt").match("/opt/requirements1.txt")


def test_inventory_hosts_and_tls_endpoints(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n"
        "  vars: {ansible_user: ops}\n"
        "  children:\n"
        "    lab:\n"
        "      hosts:\n"
        "        sim-1: {ansible_host: 127.0.0.1, ansible_port: 2201, lab_https_port: 8443, lab_address: 10.213.1.2}\n"
        "    prod:\n"
        "      hosts:\n"
        "        web.example.internal: {preaudit_tls_server_name: api.example.com}\n"
    )
    hosts = {h.name: h for h in load_inventory(inventory)}
    assert set(hosts) == {"sim-1", "web.example.internal"}
    lab = hosts["sim-1"]
    assert lab.vars["ansible_user"] == "ops"
    assert lab.tls_endpoint(443) == TlsEndpoint("127.0.0.1", 8443, "sim-1", "sim-1")
    assert lab.tls_endpoint(8443) == TlsEndpoint("10.213.1.2", 8443, "sim-1", "sim-1")
    prod = hosts["web.example.internal"]
    assert prod.tls_endpoint(443) == TlsEndpoint("web.example.internal", 443, "api.example.com", "web.example.internal")
    assert [h.name for h in load_inventory(inventory, "prod")] == ["web.example.internal"]
    with pytest.raises(InputError, match="--limit nope matches no host"):
        load_inventory(inventory, "nope")
    with pytest.raises(InputError, match="does not exist"):
        load_inventory(tmp_path / "missing.yml")

"""container_hardening on real lab hosts with a real Docker Engine.

Each control the role claims is asserted on the converged host, independently of the role: the
daemon's own view (`docker info`, its listeners, the default bridge), the files (through testinfra
and through the container scanner's checks), the host audit module, and the daemon.json the role
wrote started as a real dockerd on the controller. The fresh host proves check mode, per-control
tags, a user's own Compose override, and a host without Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanners.ansible_run import RunResult
from scanners.catalog import default_catalog
from scanners.containers import effective_compose, scan_container_files
from scanners.containers.compose import check_service
from scanners.containers.daemon import check_daemon_json
from scanners.findings import Finding, Status
from scanners.scanning import ScanContext, ScanRoot
from tests.dockerd import busybox_rootfs_tar, harness_config, import_image, running_dockerd
from tests.integration.conftest import Converged, Lab
from tests.lab_compose import COMPOSE_CONTROLS, SEEDED_COMPOSE_FAILURES, SERVICES

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
LAB_FILES = ROOT / "scanners" / "lab" / "image" / "files"
COMPOSE = "/opt/montecarlo/docker-compose.yml"
OVERRIDE = "/opt/montecarlo/docker-compose.override.yml"
DAEMON_JSON = "/etc/docker/daemon.json"
RULES = "/etc/audit/rules.d/61-preaudit-docker.rules"
ROLE = "container_hardening"
SUMMARY_TASK = "Preaudit | Summary of what was not applied and why"
HOST_CHECKS = [
    {"id": c.id, "check": dict(c.check)} for c in default_catalog() if c.id in ("CTR-D-002", "CTR-D-010", "CTR-D-011")
]


# --- helpers ---------------------------------------------------------------------------------


def _events(result: RunResult) -> list[dict[str, Any]]:
    if result.events:
        return result.events
    directory = result.artifact_dir / "job_events"
    return [
        json.loads(p.read_text()) for p in sorted(directory.glob("*.json"), key=lambda p: int(p.name.split("-")[0]))
    ]


def _role_changes(result: RunResult, role: str = ROLE) -> list[str]:
    """Tasks of ``role`` that reported a change."""
    return [
        e["event_data"].get("task", "")
        for e in _events(result)
        if e.get("event") == "runner_on_ok"
        and e["event_data"].get("role") == role
        and e["event_data"].get("res", {}).get("changed")
    ]


def _summary(result: RunResult, host: str) -> list[dict[str, str]]:
    for event in _events(result):
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == SUMMARY_TASK and data.get("host") == host:
            return [e for e in data["res"]["msg"] if e["control"].startswith("CTR")]
    raise AssertionError(f"no summary for {host}")


def _docker_info(lab: Lab, name: str) -> dict[str, Any]:
    return dict(json.loads(lab.host(name).check_output("docker info --format '{{json .}}'")))


def _host_audit(lab: Lab, name: str) -> dict[str, Any]:
    args = json.dumps({"checks": HOST_CHECKS, "discover_tls": False})
    result = lab.module("host_audit", args, pattern=name)
    assert result.rc == 0, result.stdout
    for event in result.events:
        if event.get("event") == "runner_on_ok":
            return dict(event["event_data"]["res"]["controls"])
    raise AssertionError("no host_audit result")


def _compose_findings(lab: Lab, name: str, tmp_path: Path) -> dict[tuple[str, str], Status]:
    """The container scanner's CTR-C verdicts on the host's Compose project (base file + override, if any)."""
    host = lab.host(name)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for path in (COMPOSE, OVERRIDE):
        if host.file(path).exists:
            (tmp_path / Path(path).name).write_bytes(host.file(path).content)
    found: list[Finding] = []
    scan_container_files(
        ScanContext(default_catalog(), emit=found.append), [ScanRoot(tmp_path, host=name, display="/opt/montecarlo")]
    )
    return {(f.evidence.details["service"], f.control_id): f.status for f in found if f.control_id.startswith("CTR-C")}


def _failing(statuses: dict[tuple[str, str], Status]) -> set[tuple[str, str]]:
    return {key for key, status in statuses.items() if status is not Status.PASS}


def _wait_for_docker(lab: Lab, name: str) -> None:
    assert lab.host(name).run("timeout 90 sh -c 'until docker info >/dev/null 2>&1; do sleep 1; done'").rc == 0


@pytest.fixture(scope="module")
def hardened(lab: Lab, converged: Converged) -> str:
    assert converged.first.rc == 0, converged.first.stdout[-3000:]
    name = converged.hosts[0]
    _wait_for_docker(lab, name)
    return name


# --- the converged host ------------------------------------------------------------------------


def test_site_converges_and_the_role_is_idempotent(lab: Lab, converged: Converged, hardened: str) -> None:
    assert _role_changes(converged.first), "the first run changed nothing"
    assert converged.second.rc == 0
    assert _role_changes(converged.second) == []
    again = lab.playbook("containers.yml", limit=hardened)
    assert again.rc == 0 and again.total("changed") == 0, again.stdout[-3000:]


def test_daemon_json_passes_every_daemon_control_but_userns_and_keeps_the_operators_keys(
    lab: Lab, converged: Converged, hardened: str
) -> None:
    text = lab.host(hardened).file(DAEMON_JSON).content_string
    failing = {v.control_id for v in check_daemon_json(text, DAEMON_JSON) if v.failed}
    assert failing == {"CTR-D-009"}  # userns-remap is off by default (a per-host decision)
    config = json.loads(text)
    assert config["storage-driver"] == "vfs"  # the operator's key, kept
    assert config["hosts"] == ["unix:///var/run/docker.sock"]  # CTR-D-001
    assert "insecure-registries" not in config  # CTR-D-003
    assert config["icc"] is False  # CTR-D-004
    assert config["log-driver"] == "json-file" and config["log-opts"]["max-size"] == "10m"  # CTR-D-005
    assert config["live-restore"] is True  # CTR-D-006
    assert config["userland-proxy"] is False  # CTR-D-007
    assert config["no-new-privileges"] is True  # CTR-D-008
    assert set(config["default-ulimits"]) == {"nofile", "nproc"}  # CTR-D-012
    summary = _summary(converged.first, hardened)
    assert {"control": "CTR-D-001", "action": "refused", "target": "tcp://0.0.0.0:2375"} in [
        {k: v for k, v in e.items() if k != "reason"} for e in summary
    ]
    assert [e["target"] for e in summary if e["control"] == "CTR-D-003"] == ["registry.montecarlo.lab:5000"]
    assert [e["action"] for e in summary if e["control"] == "CTR-D-009"] == ["not_applied"]
    backups = lab.host(hardened).check_output("ls /etc/docker").split()
    assert any(b.startswith("daemon.json.") and b.endswith(".preaudit-backup") for b in backups)


def test_the_lab_hosts_dockerd_runs_with_the_new_settings(lab: Lab, hardened: str) -> None:
    info = _docker_info(lab, hardened)
    assert info["LiveRestoreEnabled"] is True  # CTR-D-006
    assert "name=seccomp,profile=default" in info["SecurityOptions"]
    registries = info["RegistryConfig"]
    assert registries["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]  # CTR-D-003: only the built-in loopback
    assert all(index["Secure"] for index in registries["IndexConfigs"].values())
    host = lab.host(hardened)
    bridge = json.loads(host.check_output("docker network inspect bridge --format '{{json .Options}}'"))
    assert bridge["com.docker.network.bridge.enable_icc"] == "false"  # CTR-D-004
    # CTR-D-001: the daemon no longer listens on 2375 (it did on the image: W-021).
    assert ":2375" not in host.check_output("ss -Hltn")
    assert host.run("docker -H tcp://127.0.0.1:2375 version").rc != 0


def test_docker_socket_and_group(lab: Lab, converged: Converged, hardened: str) -> None:
    host = lab.host(hardened)
    sock = host.file("/var/run/docker.sock")
    assert sock.is_socket and sock.user == "root" and sock.group == "docker" and sock.mode == 0o660  # CTR-D-010
    # CTR-D-002: members are reported, never removed.
    assert "legacy" in host.check_output("getent group docker").split(":")[3].split(",")
    reported = [e for e in _summary(converged.first, hardened) if e["control"] == "CTR-D-002"]
    assert [(e["action"], e["target"]) for e in reported] == [("reported", "legacy")]


def test_audit_rules_watch_docker_and_the_host_audit_agrees(lab: Lab, converged: Converged, hardened: str) -> None:
    host = lab.host(hardened)
    rules = host.file(RULES)
    assert rules.user == "root" and rules.mode == 0o640
    watched = [line.split()[1] for line in rules.content_string.splitlines() if line.startswith("-w ")]
    assert all(line.endswith("-k docker") for line in rules.content_string.splitlines() if line.startswith("-w "))
    assert {"/usr/sbin/dockerd", "/usr/bin/containerd", "/etc/docker", "/var/lib/docker"} <= set(watched)
    assert all(host.file(path).exists for path in watched)
    audit = _host_audit(lab, hardened)
    # auditd cannot run in a systemd-nspawn host: persisted, judged not applicable (never passed).
    assert audit["CTR-D-011"]["status"] == "not_applicable"
    assert audit["CTR-D-011"]["observed"]["persisted_keys"] == ["docker"]
    assert audit["CTR-D-010"]["status"] == "pass"
    assert audit["CTR-D-002"]["status"] == "fail" and audit["CTR-D-002"]["details"]["unapproved"] == ["legacy"]
    entry = [e for e in _summary(converged.first, hardened) if e["control"] == "CTR-D-011"]
    assert [e["action"] for e in entry] == ["not_applied"]


def test_compose_weaknesses_are_gone_from_the_effective_configuration(lab: Lab, hardened: str, tmp_path: Path) -> None:
    host = lab.host(hardened)
    # The user's file is not edited.
    assert host.file(COMPOSE).content == (LAB_FILES / COMPOSE.lstrip("/")).read_bytes()
    override = host.file(OVERRIDE)
    assert override.user == "root" and override.mode == 0o644
    assert "Managed by preaudit (container_hardening)" in override.content_string
    statuses = _compose_findings(lab, hardened, tmp_path / "after")
    assert set(statuses) == {(s, c) for s in SERVICES for c in COMPOSE_CONTROLS}
    assert _failing(statuses) == set()
    model = effective_compose([tmp_path / "after" / "docker-compose.yml", tmp_path / "after" / Path(OVERRIDE).name])
    simulation, worker = model["services"]["simulation"], model["services"]["worker"]
    assert "network_mode" not in simulation and "/var/run/docker.sock:/var/run/docker.sock" not in simulation["volumes"]
    assert "pid" not in worker and "cap_add" not in worker
    assert all(not v.failed for s in (simulation, worker) for v in check_service(s))


@pytest.fixture(scope="module")
def hardened_daemon_json(lab: Lab, hardened: str) -> Iterator[Path]:
    """The daemon.json the role wrote, fetched to the controller where user nobody can read it."""
    if os.environ.get("PREAUDIT_SKIP_DOCKER") == "1":
        pytest.skip("PREAUDIT_SKIP_DOCKER=1: real Docker Engine tests disabled")
    directory = Path(tempfile.mkdtemp(prefix="preaudit-ctr-"))
    try:
        directory.chmod(0o755)
        path = directory / "daemon.json"
        path.write_bytes(lab.host(hardened).file(DAEMON_JSON).content)
        path.chmod(0o644)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_written_daemon_json_is_valid_for_dockerd(hardened_daemon_json: Path) -> None:
    """dockerd 20.10 loads and checks the file (unknown keys, types) before its root check."""
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "dockerd",
            "--config-file",
            str(hardened_daemon_json),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "needs to be started with root" in proc.stderr, proc.stderr


@pytest.mark.docker
def test_written_daemon_json_starts_a_real_dockerd_with_its_security_options(
    hardened_daemon_json: Path, tmp_path: Path
) -> None:
    config, removed = harness_config(json.loads(hardened_daemon_json.read_text()))
    # The harness owns the listeners and turns bridge networking off (so icc cannot apply there).
    assert removed == {"hosts": ["unix:///var/run/docker.sock"], "icc": False}
    config.pop("storage-driver", None)  # the lab's vfs driver; the harness engine picks its own
    (tmp_path / "daemon.json").write_text(json.dumps(config))
    with running_dockerd(config_file=tmp_path / "daemon.json") as engine:
        client = engine.client()
        info = client.info()
        assert info["LiveRestoreEnabled"] is True
        assert "name=seccomp,profile=default" in info["SecurityOptions"]
        assert info["LoggingDriver"] == "json-file"
        import_image(client, busybox_rootfs_tar(engine.workdir / "rootfs.tar"), "preaudit/busybox", "1")
        container = client.containers.run(
            "preaudit/busybox:1",
            ["sh", "-c", "grep NoNewPrivs /proc/self/status; ulimit -n; sleep 300"],
            detach=True,
            network_mode="none",
        )
        try:
            for _ in range(50):
                output = container.logs().decode()
                if output.count("\n") >= 2:
                    break
                time.sleep(0.1)
            # no-new-privileges and default-ulimits are daemon defaults the container inherits.
            assert output.split() == ["NoNewPrivs:", "1", "16384"], output
            container.reload()
            log_config = container.attrs["HostConfig"]["LogConfig"]
            assert log_config == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}}
        finally:
            container.remove(force=True)
        client.close()


def test_a_daemon_json_that_dockerd_refuses_is_never_written(lab: Lab, hardened: str) -> None:
    host = lab.host(hardened)
    before = host.file(DAEMON_JSON).sha256sum
    extravars = {"container_hardening_daemon_overwrite": {"no-such-daemon-option": True}}
    result = lab.playbook("containers.yml", limit=hardened, extravars=extravars)
    assert result.rc != 0
    assert "no-such-daemon-option" in result.stdout, result.stdout[-3000:]
    # The refused file never replaced the running one, and dockerd was not restarted onto it.
    assert host.file(DAEMON_JSON).sha256sum == before
    assert host.run("docker info >/dev/null").rc == 0


# --- the fresh host ----------------------------------------------------------------------------


def test_check_mode_changes_nothing_then_tags_apply_one_control_or_area(
    lab: Lab, fresh_host: str, tmp_path: Path
) -> None:
    _wait_for_docker(lab, fresh_host)
    host = lab.host(fresh_host)
    daemon_before = host.file(DAEMON_JSON).content
    assert _failing(_compose_findings(lab, fresh_host, tmp_path / "before")) == SEEDED_COMPOSE_FAILURES
    audit = _host_audit(lab, fresh_host)
    assert audit["CTR-D-011"]["status"] == "fail"
    assert audit["CTR-D-002"]["details"]["unapproved"] == ["legacy"]

    check = lab.playbook("containers.yml", limit=fresh_host, check=True, diff=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert "--- before: /etc/docker/daemon.json" in check.stdout  # the diff of what would change
    assert host.file(DAEMON_JSON).content == daemon_before
    assert not host.file(OVERRIDE).exists and not host.file(RULES).exists
    assert ":2375" in host.check_output("ss -Hltn")  # the image's plaintext listener is still there

    only = lab.playbook("containers.yml", limit=fresh_host, tags="CTR-D-004")
    assert only.rc == 0, only.stdout[-3000:]
    config = json.loads(host.file(DAEMON_JSON).content)
    assert config == {**json.loads(daemon_before), "icc": False}
    assert not host.file(OVERRIDE).exists and not host.file(RULES).exists
    _wait_for_docker(lab, fresh_host)
    bridge = json.loads(host.check_output("docker network inspect bridge --format '{{json .Options}}'"))
    assert bridge["com.docker.network.bridge.enable_icc"] == "false"

    # An area tag applies that area only: the Compose override, not daemon.json or the audit rules.
    area = lab.playbook("containers.yml", limit=fresh_host, tags="ctr_compose")
    assert area.rc == 0, area.stdout[-3000:]
    assert host.file(OVERRIDE).exists and not host.file(RULES).exists
    assert json.loads(host.file(DAEMON_JSON).content) == config


def test_users_override_is_never_overwritten_and_the_socket_is_fixed(lab: Lab, fresh_host: str) -> None:
    _wait_for_docker(lab, fresh_host)
    host = lab.host(fresh_host)
    mine = "services:\n  simulation:\n    environment:\n      MODE: local\n"
    assert host.run(f"printf '%s' '{mine}' > {OVERRIDE} && chmod 0666 /var/run/docker.sock").rc == 0
    result = lab.playbook("containers.yml", limit=fresh_host)
    assert result.rc == 0, result.stdout[-3000:]
    assert host.file(OVERRIDE).content_string == mine
    problems = [e for e in _summary(result, fresh_host) if e["control"] == "CTR-C"]
    assert [(e["action"], e["target"]) for e in problems] == [("not_applied", COMPOSE)]
    assert "override file of the user's own" in problems[0]["reason"]
    sock = host.file("/var/run/docker.sock")
    assert (sock.user, sock.group, sock.mode) == ("root", "docker", 0o660)


def test_host_without_docker_is_left_alone_and_the_summary_says_so(lab: Lab, fresh_host: str) -> None:
    host = lab.host(fresh_host)
    removed = host.run("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q docker.io")
    assert removed.rc == 0, removed.stderr
    assert not host.exists("dockerd")
    daemon_before = host.file(DAEMON_JSON).content  # a removed package keeps its configuration
    result = lab.playbook("containers.yml", limit=fresh_host)
    assert result.rc == 0, result.stdout[-3000:]
    assert result.total("changed") == 0
    assert host.file(DAEMON_JSON).content == daemon_before
    assert not host.file(OVERRIDE).exists and not host.file(RULES).exists
    summary = _summary(result, fresh_host)
    assert {e["action"] for e in summary} == {"not_applicable"}
    assert {e["control"] for e in summary} == {c.id for c in default_catalog() if c.role == ROLE}
    assert all("Docker is not installed" in e["reason"] for e in summary)

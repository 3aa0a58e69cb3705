"""The runtime scanner against a real Docker Engine (Debian's dockerd, started and stopped by the tests).

The image is made offline with `docker import` of a busybox root filesystem; containers run
with weak and with hardened settings, and the scanner must tell them apart exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from scanners.catalog import default_catalog
from scanners.containers import scan_docker_runtime
from scanners.findings import Finding, ResourceKind, Status
from scanners.findings_file import new_document, validate_document
from scanners.scanning import ScanContext
from tests.dockerd import (
    HARNESS_OWNED_KEYS,
    NEEDS_NETWORKING,
    WORKDIR_PREFIX,
    Dockerd,
    busybox_rootfs_tar,
    harness_config,
    import_image,
    leftovers,
    new_workdir,
    reclaim_abandoned,
    running_dockerd,
    start_dockerd,
)

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
LAB_DAEMON_JSON = ROOT / "scanners" / "lab" / "image" / "files" / "etc" / "docker" / "daemon.json"
HARDENED_DAEMON_JSON = ROOT / "tests" / "data" / "containers" / "daemon" / "hardened" / "daemon.json"
IMAGE = "preaudit/busybox:1"
WEAK_ENV_SECRET = "weak-container-api-key-0c4f"
ALL_R = {f"CTR-R-{i:03d}" for i in range(1, 12)}


@pytest.fixture(scope="module", autouse=True)
def _needs_root() -> None:
    if os.environ.get("PREAUDIT_SKIP_DOCKER") == "1":
        pytest.skip("PREAUDIT_SKIP_DOCKER=1: real Docker Engine tests disabled")
    if os.geteuid() != 0:
        pytest.fail("the Docker Engine tests start dockerd and need root; run as root or set PREAUDIT_SKIP_DOCKER=1")
    reclaim_abandoned()


@dataclass
class Fleet:
    engine: Dockerd
    client: docker.DockerClient


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with running_dockerd() as engine:
        client = engine.client()
        import_image(client, busybox_rootfs_tar(engine.workdir / "rootfs.tar"), *IMAGE.split(":"))
        sleep = ["sleep", "3600"]
        client.containers.run(
            IMAGE,
            sleep,
            name="weak",
            detach=True,
            network_mode="none",
            pid_mode="host",
            cap_add=["NET_ADMIN", "SYS_PTRACE"],
            volumes={str(engine.socket): {"bind": "/var/run/docker.sock", "mode": "rw"}},
            environment={"API_KEY": WEAK_ENV_SECRET},
        )
        client.containers.run(
            IMAGE,
            sleep,
            name="hardened",
            detach=True,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "size=16m"},
            cap_drop=["ALL"],
            user="65534:65534",
            security_opt=["no-new-privileges"],
            mem_limit="64m",
            pids_limit=64,
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        )
        # --privileged containers cannot start on this machine (the kernel refuses the full
        # capability set), so CTR-R-001 is covered by a created, never started container.
        client.containers.create(IMAGE, sleep, name="privileged", privileged=True, network_mode="none")
        try:
            yield Fleet(engine, client)
        finally:
            client.close()


def _scan(url: str, *, include_stopped: bool, cancelled: threading.Event | None = None) -> list[Finding]:
    findings: list[Finding] = []
    ctx = ScanContext(default_catalog(), findings.append, cancelled=cancelled or threading.Event())
    scan_docker_runtime(ctx, url, host="controller", include_stopped=include_stopped)
    return findings


def _by_container(findings: list[Finding]) -> dict[str, dict[str, Status]]:
    result: dict[str, dict[str, Status]] = {}
    for finding in findings:
        if finding.resource.kind is ResourceKind.CONTAINER:
            assert finding.resource.container is not None
            result.setdefault(finding.resource.container, {})[finding.control_id] = finding.status
    return result


def _failing(statuses: dict[str, Status]) -> set[str]:
    return {cid for cid, status in statuses.items() if status is Status.FAIL}


def test_weak_hardened_and_privileged_containers_are_told_apart_exactly(fleet: Fleet) -> None:
    findings = _scan(fleet.engine.base_url, include_stopped=True)
    containers = _by_container(findings)
    assert set(containers) == {"weak", "hardened", "privileged"}
    for name, statuses in containers.items():
        assert set(statuses) == ALL_R, f"{name}: one finding per runtime control"
    assert _failing(containers["weak"]) == ALL_R - {"CTR-R-001", "CTR-R-009"}
    assert _failing(containers["hardened"]) == set()
    assert _failing(containers["privileged"]) == ALL_R - {"CTR-R-002", "CTR-R-003", "CTR-R-004"}
    socket_mount = next(f for f in findings if f.resource.container == "weak" and f.control_id == "CTR-R-004")
    assert socket_mount.message == f"engine socket {fleet.engine.socket} mounted"
    assert socket_mount.resource.image == IMAGE and socket_mount.resource.host == "controller"


def test_running_only_by_default(fleet: Fleet) -> None:
    assert set(_by_container(_scan(fleet.engine.base_url, include_stopped=False))) == {"weak", "hardened"}


def test_engine_settings_come_from_docker_info(fleet: Fleet) -> None:
    engine = {
        f.control_id: f.status
        for f in _scan(fleet.engine.base_url, include_stopped=False)
        if f.resource.kind is ResourceKind.HOST
    }
    assert engine == {
        "CTR-D-003": Status.PASS,
        "CTR-D-004": Status.NOT_APPLICABLE,  # the harness runs without a default bridge
        "CTR-D-006": Status.FAIL,
        "CTR-D-009": Status.FAIL,
    }


def test_findings_are_a_valid_document_without_container_secrets(fleet: Fleet) -> None:
    document = new_document(default_catalog())
    document.findings = _scan(fleet.engine.base_url, include_stopped=True)
    data = document.to_dict()
    validate_document(data)
    assert WEAK_ENV_SECRET not in json.dumps(data)


def test_cancelled_scan_checks_no_container(fleet: Fleet) -> None:
    cancelled = threading.Event()
    cancelled.set()
    assert _scan(fleet.engine.base_url, include_stopped=True, cancelled=cancelled) == []
    # Cancelled while the scan runs (here: at its first finding): no container is checked after.
    cancelled = threading.Event()
    findings: list[Finding] = []

    def emit_then_cancel(finding: Finding) -> None:
        findings.append(finding)
        cancelled.set()

    ctx = ScanContext(default_catalog(), emit_then_cancel, cancelled=cancelled)
    scan_docker_runtime(ctx, fleet.engine.base_url, include_stopped=True)
    assert findings and _by_container(findings) == {}


def test_daemon_json_settings_show_in_docker_info(tmp_path: Path) -> None:
    lab, removed = harness_config(json.loads(LAB_DAEMON_JSON.read_text()))
    assert set(removed) == {"hosts", "icc"}
    hardened, removed = harness_config(json.loads(HARDENED_DAEMON_JSON.read_text()))
    assert set(removed) == {"icc"}  # icc: false needs the iptables the harness turns off
    # userns-remap "default" would create a dockremap user on this machine; the role's own test
    # runs it on a lab host instead.
    hardened.pop("userns-remap")
    statuses: dict[str, dict[str, Status]] = {}
    for name, config in (("lab", lab), ("hardened", hardened)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        with running_dockerd(config_file=path) as engine:
            client = engine.client()
            info = client.info()
            client.close()
            assert info["LiveRestoreEnabled"] is (name == "hardened")
            statuses[name] = {
                f.control_id: f.status
                for f in _scan(engine.base_url, include_stopped=False)
                if f.resource.kind is ResourceKind.HOST
            }
    assert statuses["lab"]["CTR-D-003"] is Status.FAIL  # registry.montecarlo.lab:5000 is insecure
    assert statuses["lab"]["CTR-D-006"] is Status.FAIL
    assert statuses["hardened"]["CTR-D-003"] is Status.PASS
    assert statuses["hardened"]["CTR-D-006"] is Status.PASS


def test_harness_refuses_a_config_that_sets_its_own_flags(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"hosts": ["tcp://0.0.0.0:2375"], "data-root": "/srv/docker", "icc": False}))
    workdir = new_workdir()
    with pytest.raises(ValueError, match=r"remove data-root, hosts, icc \(set by the harness or needing"):
        start_dockerd(workdir, config_file=config)
    assert not workdir.exists()
    assert {"hosts", "data-root"} <= HARNESS_OWNED_KEYS and "icc" in NEEDS_NETWORKING


def _interfaces() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


def test_teardown_leaves_no_process_mount_interface_or_directory_behind() -> None:
    interfaces = _interfaces()
    shim_dirs = {p for p in (Path("/run/containerd/s"), Path("/run/containerd")) if p.exists()}
    engine = start_dockerd(new_workdir())
    try:
        client = engine.client()
        import_image(client, busybox_rootfs_tar(engine.workdir / "rootfs.tar"), "preaudit/busybox", "1")
        client.containers.run(IMAGE, ["sleep", "3600"], detach=True, network_mode="none")
        client.close()
        assert any("containerd-shim" in item for item in leftovers(engine.workdir)), "a shim was running"
    finally:
        engine.stop()
    assert engine.process.returncode is not None
    assert leftovers(engine.workdir) == []
    assert _interfaces() == interfaces
    assert {p for p in (Path("/run/containerd/s"), Path("/run/containerd")) if p.exists()} <= shim_dirs


def test_an_engine_abandoned_by_a_killed_test_run_is_reclaimed() -> None:
    # The directory names its owner; an owner that no longer runs means a killed run left it.
    gone = subprocess.Popen(["true"])
    gone.wait()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{gone.pid}-"))
    engine = start_dockerd(workdir)
    try:
        client = engine.client()
        import_image(client, busybox_rootfs_tar(workdir / "rootfs.tar"), "preaudit/busybox", "1")
        client.containers.run(IMAGE, ["sleep", "3600"], detach=True, network_mode="none")
        client.close()
        assert workdir in reclaim_abandoned()
        assert engine.process.wait(timeout=30) is not None
        assert leftovers(workdir) == []
    finally:
        engine.stop()

# mypy: disable-error-code="func-returns-value"
"""site.yml on the other platforms a simulation host runs on: a Docker container, an LXC
container and a QEMU virtual machine, each booted from the lab image with systemd as PID 1 and its
platform's own defaults (a Docker container has no CAP_NET_ADMIN and a read-only /proc/sys;
neither container can run auditd; the VM has a kernel of its own and applies everything).

Check mode on the fresh hosts, converge with failed=0, a second run with changed=0, then every
OS and SSH control's testinfra check on every host. What a platform cannot apply is persisted and
named in the run's summary, never hidden. The VM host runs with PREAUDIT_TEST_VM=1 (the slowest
matrix: about ten minutes emulated).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko
import pytest

import tests.integration.test_os_ssh_hardening as os_ssh
from scanners.ansible_run import RunResult
from scanners.lab.fleet import Fleet
from scanners.lab.settings import LabSettings
from tests.dockerd import running_dockerd
from tests.integration.conftest import LAB_API_KEY, TEST_LAB_ROOT, TEST_PREFIX, Lab

pytestmark = pytest.mark.lab
# The emulated VM (no usable KVM here) takes about ten minutes of check mode, converge and re-run:
# it is the slowest matrix, so it runs on request (PREAUDIT_TEST_VM=1), and each closing note that
# lands a change to the roles shows its run.
WITH_VM = os.environ.get("PREAUDIT_TEST_VM") == "1"
PLATFORMS = ["docker", "lxc", *(["vm"] if WITH_VM else [])]
NEEDS_VM = pytest.mark.skipif(not WITH_VM, reason="the emulated VM host runs with PREAUDIT_TEST_VM=1")
# What systemd-detect-virt says inside each.
DETECTED = {"docker": "docker", "lxc": "lxc", "vm": "qemu"}
# What a Docker container may not do, and so the role leaves to the machine running it.
DOCKER_CANNOT = {"OS-FW-002", "OS-FW-003"}
# Mounts a container may not have of its own: the fstab entry applies them at the next boot.
NEXT_BOOT_MOUNTS = {"OS-FS-001": "/tmp", "OS-FS-002": "/dev/shm"}


@dataclass
class PlatformRuns:
    lab: Lab
    platform_of: dict[str, str]
    check: RunResult
    etc_before: dict[str, str]
    etc_after_check: dict[str, str]
    first: RunResult
    second: RunResult

    def host(self, platform: str) -> str:
        return next(name for name, p in self.platform_of.items() if p == platform)


@pytest.fixture(scope="module")
def platforms(lab: Lab) -> Iterator[PlatformRuns]:
    """A lab of its own (a Docker, an LXC and a VM host, beside the session's nspawn fleet), run through
    check mode, then converged twice. Depends on ``lab`` only so that stale labs are cleaned first."""
    # Named like the session's lab (the PID last), so a session killed mid-run has it removed too.
    lab_dir = TEST_LAB_ROOT / f"preaudit-test-lab-platforms-{lab.work.parent.name.rsplit('-', 1)[1]}"
    with running_dockerd() as engine:
        settings = dataclasses.replace(LabSettings.isolated(lab_dir, f"{TEST_PREFIX}x"), docker_host=engine.base_url)
        fleet = Fleet(settings, progress=lambda msg: print(f"lab: {msg}", file=sys.stderr))
        try:
            state = fleet.up(len(PLATFORMS), PLATFORMS)
            names = sorted(state.hosts)
            plab = Lab(fleet, names, lab_dir / "work")
            for name in names:
                plab.root_run(name, "systemctl is-system-running --wait")
            before = {n: os_ssh._etc_fingerprint(plab, n) for n in names}
            check = plab.playbook("site.yml", check=True, diff=True)
            after_check = {n: os_ssh._etc_fingerprint(plab, n) for n in names}
            first = plab.playbook("site.yml")
            second = plab.playbook("site.yml")
            yield PlatformRuns(
                plab, {n: state.hosts[n].platform for n in names}, check, before, after_check, first, second
            )
        finally:
            fleet.down()
            shutil.rmtree(lab_dir, ignore_errors=True)


def test_the_hosts_run_on_the_platforms_they_claim(platforms: PlatformRuns) -> None:
    assert sorted(platforms.platform_of.values()) == sorted(PLATFORMS)
    for name, platform in platforms.platform_of.items():
        detected = platforms.lab.root_run(name, "systemd-detect-virt").stdout.strip()
        assert detected == DETECTED[platform], (name, detected)


def test_check_mode_on_fresh_hosts_changes_nothing(platforms: PlatformRuns) -> None:
    assert platforms.check.rc == 0, platforms.check.stdout[-3000:]
    assert platforms.check.total("failures") == 0 and platforms.check.total("dark") == 0
    assert all(counts["changed"] > 0 for counts in platforms.check.per_host().values())
    for name in platforms.platform_of:
        assert platforms.etc_after_check[name] == platforms.etc_before[name], name


def test_site_converges_with_no_failure_then_changes_nothing(platforms: PlatformRuns) -> None:
    first, second = platforms.first, platforms.second
    assert first.rc == 0, first.stdout[-3000:]
    assert first.total("failures") == 0 and first.total("dark") == 0
    assert all(counts["changed"] > 0 for counts in first.per_host().values())
    assert second.rc == 0, second.stdout[-3000:]
    changed = {h: c["changed"] for h, c in second.per_host().items()}
    assert set(changed.values()) == {0}, f"second run changed something: {changed}"


def test_summary_names_what_each_platform_cannot_apply(platforms: PlatformRuns) -> None:
    out = platforms.first.stdout
    for platform in ("docker", "lxc"):
        assert f"auditd cannot run in a {platform} container: configured and enabled, not started" in out
    assert "auditd cannot run in a qemu" not in out
    assert "the docker container has no CAP_NET_ADMIN" in out
    assert "persisted; the running kernel belongs to the container host" in out
    # dockerd cannot run inside the Docker host: daemon.json is written and the reason given.
    assert "daemon.json written, dockerd not restarted (docker.service is" in out


@pytest.mark.parametrize("control", sorted(os_ssh.CHECKS))
def test_control_holds_on_docker_lxc_and_vm_hosts(platforms: PlatformRuns, control: str) -> None:
    for name, platform in platforms.platform_of.items():
        host = platforms.lab.host(name)
        if platform == "docker" and control in DOCKER_CANNOT:
            # Left to the machine running the container, and nothing half-done on the host.
            assert host.run("nft list ruleset").rc != 0  # no CAP_NET_ADMIN: the reason it is left
            assert "preaudit" not in (host.file("/etc/nftables.conf").content_string if host.file(
                "/etc/nftables.conf").exists else "")  # fmt: skip
            assert not host.service("nftables").is_enabled
            continue
        if platform == "docker" and control == "OS-NET-001":
            # dockerd cannot run inside the Docker host, but it is installed: forwarding stays
            # the Docker host's to decide (never written off), as on every host with Docker.
            assert host.package("docker.io").is_installed
            assert "ip_forward" not in host.file("/etc/sysctl.d/60-preaudit-hardening.conf").content_string
            continue
        mount = NEXT_BOOT_MOUNTS.get(control)
        if mount and not host.mount_point(mount).exists:
            entry = re.search(rf"^tmpfs {re.escape(mount)} tmpfs (\S+)", host.file("/etc/fstab").content_string, re.M)
            assert entry and {"nodev", "nosuid", "noexec"} <= set(entry.group(1).split(",")), (name, mount)
            assert f"{mount} is not a separate mount on the running host" in platforms.first.stdout
            continue
        os_ssh.CHECKS[control](host)


def test_key_login_works_and_passwords_are_refused_on_each_platform(platforms: PlatformRuns) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(platforms.lab.fleet.settings.ssh_key))
    for name in platforms.platform_of:
        transport = os_ssh._ssh_client(platforms.lab, name)
        try:
            transport.auth_publickey("ops", key)
            assert transport.is_authenticated()
        finally:
            transport.close()
        transport = os_ssh._ssh_client(platforms.lab, name)
        try:
            with pytest.raises(paramiko.BadAuthenticationType) as refused:
                transport.auth_password("ops", "ops-lab-password")
            assert refused.value.allowed_types == ["publickey"]
        finally:
            transport.close()


@pytest.mark.parametrize("platform", [p for p in ("lxc", "vm") if p in PLATFORMS])
def test_firewall_drops_an_unexpected_port(platforms: PlatformRuns, platform: str) -> None:
    lab, name = platforms.lab, platforms.host(platform)
    host = lab.host(name)
    host.run("systemd-run --unit=preaudit-test-listener python3 -m http.server 8081 --bind 0.0.0.0")
    try:
        assert host.run("for i in $(seq 50); do ss -ltn | grep -q ':8081 ' && exit 0; sleep 0.1; done; exit 1").rc == 0
        address = lab.address(name)
        assert os_ssh._connects(address, 22) and os_ssh._connects(address, 443)
        assert not os_ssh._connects(address, 8081), "port 8081 answered through the firewall"
    finally:
        host.run("systemctl stop preaudit-test-listener")


def test_simulation_service_answers_over_tls_on_each_platform(platforms: PlatformRuns) -> None:
    for name in platforms.platform_of:
        status, body = platforms.lab.https_get(name, "/simulate/pi?samples=20000&seed=3", {"X-API-Key": LAB_API_KEY})
        assert status == 200, body
        assert json.loads(body)["samples"] == 20000


def test_host_audit_reports_the_docker_hosts_firewall_as_not_its_own(platforms: PlatformRuns) -> None:
    checks = [{"id": "OS-FW-002", "check": {"type": "nftables", "rule": "input_policy_drop"}}]
    result = platforms.lab.module("host_audit", json.dumps({"checks": checks, "discover_tls": False}))
    assert result.rc == 0, result.stdout
    seen = {}
    for event in result.events:
        if event.get("event") == "runner_on_ok":
            data = event["event_data"]
            seen[data["host"]] = (data["res"]["controls"]["OS-FW-002"]["status"], data["res"]["host"]["net_admin"])
    expected = {"docker": ("not_applicable", False), "lxc": ("pass", True), "vm": ("pass", True)}
    assert seen == {platforms.host(p): expected[p] for p in PLATFORMS}


@NEEDS_VM
def test_the_vm_runs_auditd_with_the_rules_loaded_and_its_kernel_settings_applied(platforms: PlatformRuns) -> None:
    host = platforms.lab.host(platforms.host("vm"))
    assert host.service("auditd").is_running
    loaded = host.check_output("auditctl -l")
    for key in ("identity", "scope", "time-change", "logins", "perm_mod", "kernel_modules"):
        # auditctl -l prints a watch's key as "-k KEY", a syscall rule's as "-F key=KEY".
        assert re.search(rf"(-k |-F key=){re.escape(key)}$", loaded, re.M), key
    assert host.sysctl("kernel.kptr_restrict") == 2 and host.sysctl("net.ipv4.conf.all.send_redirects") == 0
    vm_summary = [line for line in platforms.first.stdout.splitlines() if "running kernel belongs" in line]
    on_all = f"on {len(PLATFORMS)} host(s)"
    assert vm_summary and not any(on_all in line for line in vm_summary), vm_summary  # containers only

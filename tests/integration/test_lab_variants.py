"""A host of the ``minimal`` variant, as a real fleet has them: debootstrap's minbase with only what
the platform needs, managed as root with a key, its only apt source the offline one. One boot of a
one-host fleet of its own (the session's lab fleet is not needed, so not booted)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator

import paramiko
import pytest

from scanners.lab.fleet import Fleet
from scanners.lab.image import FIX_APT_SOURCE, FIX_APT_SOURCE_LINE, OFFLINE_APT_SOURCE
from scanners.lab.settings import LabSettings
from tests.integration.conftest import LAB_API_KEY, TEST_LAB_ROOT, TEST_PREFIX, Lab, _remove_stale_labs
from tests.integration.test_os_ssh_hardening import _ssh_client

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def minimal() -> Iterator[tuple[Lab, str]]:
    if os.environ.get("PREAUDIT_SKIP_LAB") == "1":
        pytest.skip("PREAUDIT_SKIP_LAB=1: lab integration tests disabled")
    if os.geteuid() != 0:
        pytest.fail("the lab integration tests need root (systemd-nspawn); run them as root or set PREAUDIT_SKIP_LAB=1")
    _remove_stale_labs()
    # Named like the session's lab (the PID last), so a session killed mid-run has it removed too.
    lab_dir = TEST_LAB_ROOT / f"preaudit-test-lab-variants-{os.getpid()}"
    fleet = Fleet(
        LabSettings.isolated(lab_dir, f"{TEST_PREFIX}m"), progress=lambda msg: print(f"lab: {msg}", file=sys.stderr)
    )
    try:
        state = fleet.up(1, variants=["minimal"])
        name = next(iter(state.hosts))
        lab = Lab(fleet, [name], lab_dir / "work")
        lab.root_run(name, "systemctl is-system-running --wait")
        yield lab, name
    finally:
        fleet.down()
        shutil.rmtree(lab_dir, ignore_errors=True)


def test_the_host_is_a_minimal_one(minimal: tuple[Lab, str]) -> None:
    lab, name = minimal
    assert [(row["variant"], row["running"]) for row in lab.fleet.status()] == [("minimal", True)]
    host = lab.host(name)
    assert host.system_info.release.startswith("12")
    assert not host.file("/etc/protocols").exists  # no netbase
    assert not host.package("netbase").is_installed
    assert not host.package("python3-cryptography").is_installed
    assert host.run("python3 -c 'import cryptography'").rc != 0
    assert not host.package("openssl").is_installed
    assert host.run("command -v openssl").rc != 0
    for package in ("docker.io", "apt-utils", "python3-apt"):
        assert not host.package(package).is_installed, package
    assert host.run("command -v dockerd || command -v docker").rc != 0


def test_apt_resolves_from_the_offline_source_only(minimal: tuple[Lab, str]) -> None:
    lab, name = minimal
    host = lab.host(name)
    assert not host.file("/etc/apt/sources.list").exists
    assert host.check_output("cat /etc/apt/sources.list.d/*.list") == f"deb [trusted=yes] file:{OFFLINE_APT_SOURCE} ./"
    simulated = host.run("apt-get install -s auditd")
    assert simulated.rc == 0, simulated.stderr
    assert "Inst auditd " in simulated.stdout
    assert f"file:{OFFLINE_APT_SOURCE} ./ Packages" in host.check_output("apt-cache policy auditd")
    assert host.run("apt-get install -s python3-cryptography").rc != 0


def test_the_fix_source_offers_python3_cryptography_once_added(minimal: tuple[Lab, str]) -> None:
    lab, name = minimal
    host = lab.host(name)
    assert host.file(f"{FIX_APT_SOURCE}/Packages").contains("^Package: python3-cryptography$")
    assert host.file(f"{FIX_APT_SOURCE}/Release").exists
    extra = "/etc/apt/sources.list.d/preaudit-test-fix.list"
    try:
        assert host.run(f"echo '{FIX_APT_SOURCE_LINE}' > {extra} && apt-get update -qq").rc == 0
        simulated = host.run("apt-get install -s python3-cryptography")
        assert simulated.rc == 0, simulated.stderr
        assert "Inst python3-cryptography " in simulated.stdout
    finally:
        host.run(f"rm -f {extra} && apt-get update -qq")


def test_root_logs_in_with_the_controllers_key(minimal: tuple[Lab, str]) -> None:
    lab, name = minimal
    host = lab.host(name)
    assert host.check_output("id -un") == "root"  # Ansible (under testinfra) connects as root
    assert "permitrootlogin without-password" in host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1")
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.fleet.settings.ssh_key))
    transport = _ssh_client(lab, name)
    try:
        transport.auth_publickey("root", key)
        assert transport.is_authenticated()
    finally:
        transport.close()


def test_the_platform_runs_behind_nginx_over_tls(minimal: tuple[Lab, str]) -> None:
    lab, name = minimal
    host = lab.host(name)
    for service in ("montecarlo", "nginx", "ssh"):
        assert host.service(service).is_running, service
        assert host.service(service).is_enabled, service
    assert host.user("montecarlo").shell == "/usr/sbin/nologin"
    status, body = lab.https_get(name, "/health")
    assert status == 200
    assert json.loads(body)["service"] == "montecarlo"
    status, body = lab.https_get(name, "/simulate/pi?samples=20000&seed=3", {"X-API-Key": LAB_API_KEY})
    assert status == 200, body
    assert json.loads(body)["samples"] == 20000

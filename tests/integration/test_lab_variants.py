"""A host of the ``minimal`` variant, as a real fleet has them: debootstrap's minbase with only what
the platform needs, managed as root with a key, its only apt source the offline one. One boot of a
one-host fleet of its own (the session's lab fleet is not needed, so not booted)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from scanners.ansible_run import RunResult
from scanners.catalog import default_catalog
from scanners.findings import Status
from scanners.lab.ca import ca_paths
from scanners.lab.fleet import Fleet
from scanners.lab.image import FIX_APT_SOURCE, FIX_APT_SOURCE_LINE, OFFLINE_APT_SOURCE
from scanners.lab.settings import LabSettings
from scanners.vulndb import import_snapshot
from tests.integration.conftest import LAB_API_KEY, TEST_LAB_ROOT, TEST_PREFIX, Lab, _remove_stale_labs
from tests.integration.hardening_support import KEY_FILE, tls_connects
from tests.integration.test_os_ssh_hardening import _ssh_client
from tests.integration.test_scan_pipeline import FAILING, WEAKNESSES, Scan, run_scan, site_roles

ROOT = Path(__file__).resolve().parents[2]

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


# -- hardening the minimal host: one sequence on the one host, shared by the tests below ----------

PINNED_OUT = "/etc/apt/preferences.d/preaudit-test-no-nftables"
# What the failed-on-purpose run must report: the control whose package is pinned out, and the two
# that configure what it installs. Nothing else.
FAILED_ON_PURPOSE = {"OS-FW-001", "OS-FW-002", "OS-FW-003"}
# Root logs in with a key on this root-managed host (prohibit-password): the deviation stays a
# failing SSH-001 finding until someone waives it, it is never silently passed.
ROOT_MANAGED_DEVIATION = {"SSH-001"}


@dataclass
class Hardening:
    fresh_scan: Scan
    etc_before_check: str
    etc_after_check: str
    check: RunResult
    failed_run: RunResult
    failed_scan: Scan
    fixed_run: RunResult
    rerun: RunResult
    final_scan: Scan


def _etc_digest(lab: Lab, name: str) -> str:
    result = lab.root_run(name, "find /etc -xdev -type f -newer /etc/hostname -print0 | sort -z | xargs -0 sha256sum")
    listing = lab.root_run(name, "find /etc -xdev -printf '%p %m %U %G\\n' | sort")
    return result.stdout + listing.stdout


@pytest.fixture(scope="module")
def hardening(minimal: tuple[Lab, str], tmp_path_factory: pytest.TempPathFactory) -> Hardening:
    """Scan the fresh host, check mode, converge with nftables pinned out of the host's source
    (a control that cannot be applied), fix the cause, converge, re-run, scan again."""
    lab, name = minimal
    vulndb = tmp_path_factory.mktemp("vulndb")
    import_snapshot(ROOT / "tests" / "data" / "advisories", vulndb)
    inventory = ("--inventory", str(lab.inventory), "--vuln-db", str(vulndb))
    fresh_scan = run_scan(tmp_path_factory.mktemp("fresh-scan"), *inventory)
    before = _etc_digest(lab, name)
    check = lab.playbook("site.yml", check=True, diff=True)
    after = _etc_digest(lab, name)
    pin = f"printf 'Package: nftables\\nPin: release *\\nPin-Priority: -1\\n' > {PINNED_OUT}"
    assert lab.root_run(name, pin).returncode == 0
    failed_run = lab.playbook("site.yml", keep_events=True)
    failed_scan = run_scan(tmp_path_factory.mktemp("failed-scan"), *inventory, "--scanners", "host")
    assert lab.root_run(name, f"rm -f {PINNED_OUT}").returncode == 0
    fixed_run = lab.playbook("site.yml")
    rerun = lab.playbook("site.yml")
    final_scan = run_scan(tmp_path_factory.mktemp("final-scan"), *inventory, "--scanners", "host,tls")
    return Hardening(fresh_scan, before, after, check, failed_run, failed_scan, fixed_run, rerun, final_scan)


def _failing_role_controls(scan: Scan, host: str) -> set[str]:
    fixed = default_catalog().remediated_by(site_roles())
    return {f.control_id for f in scan.on(host) if f.status in FAILING and f.control_id in fixed}


def test_a_scan_of_the_fresh_minimal_host_finds_its_seeded_weaknesses(
    minimal: tuple[Lab, str], hardening: Hardening
) -> None:
    _, name = minimal
    assert hardening.fresh_scan.rc == 0, hardening.fresh_scan.stderr[-3000:]
    catalog = default_catalog()
    failing = {f.control_id for f in hardening.fresh_scan.on(name) if f.status is Status.FAIL}
    present = [w for w in WEAKNESSES if "minimal" in w.get("variants", ["minimal"])]
    assert len(present) >= 20
    missed = [f"{w['id']}: {c}" for w in present for c in w["controls"] if c in catalog and c not in failing]
    assert not missed, "seeded weaknesses the scan did not report on the minimal host:\n" + "\n".join(missed)


def test_check_mode_on_the_fresh_minimal_host_fails_nothing_and_changes_nothing(hardening: Hardening) -> None:
    assert hardening.check.rc == 0, hardening.check.stdout[-3000:]
    assert hardening.check.total("failures") == 0 and hardening.check.total("dark") == 0
    assert hardening.check.total("changed") > 0  # it saw work to do
    assert hardening.etc_before_check == hardening.etc_after_check


def test_a_control_whose_package_cannot_be_installed_fails_alone(
    minimal: tuple[Lab, str], hardening: Hardening
) -> None:
    _, name = minimal
    run = hardening.failed_run
    assert run.per_host()[name]["failures"] == 1, run.stdout[-3000:]
    # The one failure of the host is the play's last task; the roles rescued the rest.
    message = next(
        str(e["event_data"]["res"].get("msg", ""))
        for e in run.events
        if e.get("event") == "runner_on_failed"
        and e["event_data"].get("task", "").startswith("Preaudit | Fail the host")
    )
    assert message.startswith(f"{len(FAILED_ON_PURPOSE)} control(s) could not be applied on this host"), message
    for control in FAILED_ON_PURPOSE:
        assert control in message
    assert "package nftables cannot be installed from the host's package sources" in message
    # Every other control of all five roles was applied: the host audit fails only those.
    assert hardening.failed_scan.rc == 0, hardening.failed_scan.stderr[-3000:]
    assert _failing_role_controls(hardening.failed_scan, name) == FAILED_ON_PURPOSE | ROOT_MANAGED_DEVIATION


def test_after_the_cause_is_fixed_the_host_converges_and_a_rerun_changes_nothing(
    minimal: tuple[Lab, str], hardening: Hardening
) -> None:
    lab, name = minimal
    for run in (hardening.fixed_run, hardening.rerun):
        assert run.rc == 0, run.stdout[-3000:]
        assert run.per_host()[name]["failures"] == 0 and run.per_host()[name]["dark"] == 0
    assert hardening.rerun.per_host()[name]["changed"] == 0, hardening.rerun.stdout[-3000:]
    host = lab.host(name)
    assert host.package("nftables").is_installed
    assert not host.file("/etc/protocols").exists  # the ruleset loaded without netbase
    assert "policy drop" in host.check_output("nft list chain inet preaudit_filter input")
    assert _failing_role_controls(hardening.final_scan, name) == ROOT_MANAGED_DEVIATION


def test_the_hardened_minimal_host_still_logs_root_in_by_key_and_serves_over_tls(
    minimal: tuple[Lab, str], hardening: Hardening
) -> None:
    lab, name = minimal
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.fleet.settings.ssh_key))
    transport = _ssh_client(lab, name)
    try:
        transport.auth_publickey("root", key)
        assert transport.is_authenticated()
    finally:
        transport.close()
    transport = _ssh_client(lab, name)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "root")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()
    status, body = lab.https_get(name, "/health")
    assert status == 200, body
    deviation = [f for f in hardening.final_scan.on(name) if f.control_id == "SSH-001"]
    assert deviation and all(f.status is Status.FAIL for f in deviation)


def test_the_minimal_host_makes_its_key_and_serves_the_lab_cas_certificate_with_no_package_for_it(
    minimal: tuple[Lab, str], hardening: Hardening
) -> None:
    # The host has no python3-cryptography and no openssl: ssh-keygen made the key, the lab CA
    # issued the certificate on the controller, and nothing was installed for it.
    lab, name = minimal
    host = lab.host(name)
    key = host.file(KEY_FILE)
    assert (key.mode, key.user, key.group) == (0o600, "root", "root")
    assert "PRIVATE KEY" in host.check_output(f"head -n 1 {KEY_FILE}")
    for package in ("python3-cryptography", "openssl"):
        assert not host.package(package).is_installed, package
    ca_file = ca_paths(lab.fleet.settings).certificate
    port = lab.port(name, "https")
    for server_name in (name, "montecarlo.lab"):
        assert tls_connects(port, server_name=server_name, cafile=ca_file), server_name

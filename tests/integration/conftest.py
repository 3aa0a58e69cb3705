"""The lab fleet for integration tests: real hosts booted once per session, always torn down.

The fleet lives in its own directory with its own host-name prefix, so it never touches a
lab the user has running. Teardown runs on success, failure and Ctrl-C (pytest finalises
session fixtures on KeyboardInterrupt); a fleet left behind by a killed session is removed at
the start of the next one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from scanners.ansible_run import RunResult, run_module, run_playbook
from scanners.lab.fleet import Fleet
from scanners.lab.processes import start_ticks
from scanners.lab.settings import LabSettings

TEST_LAB_ROOT = Path(os.environ.get("PREAUDIT_TEST_LAB_ROOT", "/var/tmp"))
# Concurrent test sessions on one machine need distinct host names (they name veth links).
TEST_PREFIX = os.environ.get("PREAUDIT_TEST_PREFIX", "pt")
LAB_API_KEY = "mc_lab_4f8a2c91d7e35b60a1f9c8e2d4b7a613"

# testinfra and ansible-runner look for ansible-* programs on PATH.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


@dataclass
class Lab:
    fleet: Fleet
    names: list[str]
    work: Path

    @property
    def inventory(self) -> Path:
        return self.fleet.settings.inventory

    def host(self, name: str) -> Any:
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={self.inventory}")

    def port(self, name: str, kind: str) -> int:
        host = self.fleet.state().hosts[name]
        return host.ssh_port if kind == "ssh" else host.https_port

    def address(self, name: str) -> str:
        return self.fleet.state().hosts[name].address

    def root_run(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the host's namespaces, without SSH (works when SSH does not).
        A VM has no namespaces on the controller: its commands go through SSH and sudo."""
        if self.fleet.state().hosts[name].platform == "vm":
            argv = [
                "ssh", "-q", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-i", str(self.fleet.settings.ssh_key), "-p", str(self.port(name, "ssh")), "ops@127.0.0.1",
                "sudo", "-n", "/bin/sh", "-c", shlex.quote(command),
            ]  # fmt: skip
            return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        leader = str(self.fleet.leader_pid(name))
        argv = ["nsenter", "-t", leader, "-m", "-u", "-i", "-n", "-p", "--", "/bin/sh", "-c", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def reset(self, *names: str) -> None:
        """Fresh disks from the image, and hosts done with their first boot: services still starting
        (containerd creates /etc/cni late) would otherwise look like changes."""
        for name in names:
            self.fleet.reset_host(name)
        for name in names:
            self.root_run(name, "systemctl is-system-running --wait")

    def playbook(self, playbook: str, **kwargs: Any) -> RunResult:
        run_dir = self.work / f"run-{time.monotonic_ns()}"
        return run_playbook(playbook, self.inventory, run_dir, **kwargs)

    def module(self, module: str, args: str = "", pattern: str = "all") -> RunResult:
        return run_module(module, args, self.inventory, self.work / f"adhoc-{time.monotonic_ns()}", pattern)

    def https_get(self, name: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(f"https://127.0.0.1:{self.port(name, 'https')}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _remove_stale_labs() -> None:
    for lab_dir in TEST_LAB_ROOT.glob("preaudit-test-lab-*"):
        try:
            pid = int(lab_dir.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if start_ticks(pid) is not None:
            continue
        Fleet(LabSettings.isolated(lab_dir, TEST_PREFIX)).down()
        shutil.rmtree(lab_dir, ignore_errors=True)


@dataclass
class Converged:
    """site.yml applied twice to the converged hosts: the first run and the idempotence run."""

    hosts: list[str]
    first: RunResult
    second: RunResult


@pytest.fixture(scope="session")
def converged(lab: Lab) -> Converged:
    """The first hosts of the fleet hardened with site.yml (read-only for the tests that use it).

    The last host is never converged: tests that need a fresh or a disposable host take it
    through the ``fresh_host`` fixture.
    """
    hosts = lab.names[:-1]
    # Fresh disks first: whichever test module asks first, the first run meets unhardened hosts.
    lab.reset(*hosts)
    limit = ",".join(hosts)
    first = lab.playbook("site.yml", limit=limit)
    second = lab.playbook("site.yml", limit=limit)
    return Converged(hosts, first, second)


@pytest.fixture
def fresh_host(lab: Lab) -> str:
    """The last host of the fleet with a fresh disk from the image, as newly provisioned."""
    name = lab.names[-1]
    lab.reset(name)
    return name


def pytest_configure(config: pytest.Config) -> None:
    # CI timeouts and `kill` send SIGTERM, which would end Python without running the fixtures'
    # teardown and leave the lab's hosts running: treat it like Ctrl-C.
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.environ.get("PREAUDIT_SKIP_LAB") == "1":
        pytest.skip("PREAUDIT_SKIP_LAB=1: lab integration tests disabled")
    if os.geteuid() != 0:
        pytest.fail("the lab integration tests need root (systemd-nspawn); run them as root or set PREAUDIT_SKIP_LAB=1")
    _remove_stale_labs()
    count = int(os.environ.get("PREAUDIT_TEST_HOSTS", "3"))
    lab_dir = TEST_LAB_ROOT / f"preaudit-test-lab-{os.getpid()}"
    fleet = Fleet(
        LabSettings.isolated(lab_dir, TEST_PREFIX), progress=lambda msg: print(f"lab: {msg}", file=sys.stderr)
    )
    try:
        fleet.up(count)
        yield Lab(fleet, [f"{TEST_PREFIX}-{i}" for i in range(1, count + 1)], lab_dir / "work")
    finally:
        fleet.down()
        shutil.rmtree(lab_dir, ignore_errors=True)

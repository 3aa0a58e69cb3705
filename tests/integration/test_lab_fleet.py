"""The lab fleet: real hosts, reachable by Ansible and testinfra, serving the simulation over TLS."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanners.lab.fleet import Fleet
from scanners.lab.processes import ProcessRef
from scanners.lab.settings import LabSettings
from tests.integration.conftest import LAB_API_KEY, Lab

pytestmark = pytest.mark.lab
MANIFEST = Path(__file__).resolve().parents[2] / "scanners" / "lab" / "weaknesses.yml"


def test_ansible_ping_reaches_every_host(lab: Lab) -> None:
    result = lab.module("ping")
    assert result.rc == 0, result.stdout
    per_host = result.per_host()
    assert sorted(per_host) == sorted(lab.names)
    assert all(counts["ok"] == 1 and counts["dark"] == 0 for counts in per_host.values())


@pytest.mark.parametrize("index", [0, 1])
def test_testinfra_sees_a_booted_simulation_host(lab: Lab, index: int) -> None:
    name = lab.names[index]
    host = lab.host(name)
    assert host.check_output("hostname") == name
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("12")
    assert host.process.get(pid=1).comm == "systemd"
    assert host.check_output("systemd-detect-virt --container") == "systemd-nspawn"
    for service in ("ssh", "nginx", "montecarlo"):
        assert host.service(service).is_running, service
        assert host.service(service).is_enabled, service
    mc = host.user("montecarlo")
    assert mc.shell == "/usr/sbin/nologin"
    assert host.process.get(comm="python3", user="montecarlo") is not None
    assert host.socket("tcp://0.0.0.0:443").is_listening
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    # Each host is on its own veth link, not only loopback.
    assert lab.address(name) in host.check_output("ip -4 -o addr show dev host0")


def test_simulation_service_answers_over_tls(lab: Lab) -> None:
    name = lab.names[0]
    status, body = lab.https_get(name, "/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "service": "montecarlo", "version": "1.4.2"}

    status, _ = lab.https_get(name, "/simulate/pi?samples=1000")
    assert status == 401

    status, body = lab.https_get(name, "/simulate/pi?samples=200000&seed=7", {"X-API-Key": LAB_API_KEY})
    assert status == 200
    pi = json.loads(body)
    assert pi["samples"] == 200000
    assert abs(pi["estimate"] - math.pi) < 4 * pi["stderr"]

    query = "spot=100&strike=105&rate=0.05&vol=0.2&maturity=1&paths=200000&seed=11"
    status, body = lab.https_get(name, f"/price/european-call?{query}", {"X-API-Key": LAB_API_KEY})
    assert status == 200
    call = json.loads(body)
    assert call["analytic"] == pytest.approx(8.0214, abs=1e-3)  # Black-Scholes reference value
    assert abs(call["price"] - call["analytic"]) < 4 * call["stderr"]

    status, body = lab.https_get(name, "/simulate/pi?samples=0", {"X-API-Key": LAB_API_KEY})
    assert status == 400


def _tls_accepts(port: int, version: ssl.TLSVersion) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw):
            return True
    except (ssl.SSLError, OSError):
        return False


def _probe(lab: Lab, name: str, probe: dict[str, Any]) -> bool:
    host = lab.host(name)
    ((kind, spec),) = probe.items()
    if kind == "sshd":
        effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
        return bool(effective.get(spec["key"]) == spec["value"])
    if kind == "file_mode":
        return bool(host.file(spec["path"]).mode == int(spec["mode"], 8))
    if kind == "file_contains":
        content = host.file(spec["path"]).content_string
        return re.search(spec["pattern"], content, re.MULTILINE) is not None
    if kind == "package":
        return bool(host.package(spec).is_installed)
    if kind == "owner_uid":
        return bool(host.file(spec["path"]).uid == spec["uid"])
    if kind == "command":
        return bool(host.run(spec).rc == 0)
    if kind == "tls_protocol":
        return _tls_accepts(lab.port(name, "https"), {"TLSv1": ssl.TLSVersion.TLSv1}[spec])
    if kind == "http_header_absent":
        context = ssl._create_unverified_context()
        with (
            socket.create_connection(("127.0.0.1", lab.port(name, "https")), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.0\r\nHost: montecarlo.lab\r\n\r\n")
            head = tls.recv(65536).split(b"\r\n\r\n", 1)[0].decode().lower()
        return f"\n{spec}:" not in head
    raise AssertionError(f"unknown probe kind {kind}")


WEAKNESSES = yaml.safe_load(MANIFEST.read_text())["weaknesses"]


@pytest.fixture(scope="module")
def pristine_host(lab: Lab) -> str:
    """The last host with a fresh disk, once for all the probes (other modules may have hardened it)."""
    name = lab.names[-1]
    lab.reset(name)
    return name


@pytest.mark.parametrize("weakness", WEAKNESSES, ids=[w["id"] for w in WEAKNESSES])
def test_seeded_weakness_is_present_on_a_fresh_host(lab: Lab, pristine_host: str, weakness: dict[str, Any]) -> None:
    assert _probe(lab, pristine_host, weakness["probe"]), f"{weakness['id']}: {weakness['what']} not found"


def test_offline_apt_source_installs_role_packages_and_reset_restores_the_image(lab: Lab) -> None:
    name = lab.names[-1]
    host = lab.host(name)
    result = host.run("apt-get install -y -q nftables auditd libpam-pwquality unattended-upgrades chrony")
    assert result.rc == 0, result.stderr
    assert host.package("nftables").is_installed
    lab.fleet.reset_host(name)
    fresh = lab.host(name)
    assert not fresh.package("nftables").is_installed
    assert fresh.service("montecarlo").is_running


def test_a_host_whose_nspawn_was_killed_resets_and_boots(lab: Lab) -> None:
    # What the OOM killer or a SIGKILL leaves: the host's init (and its network namespace, the
    # veth pair, nspawn's propagation mount) without nspawn. A reset must clear it, not fail on it.
    name = lab.names[-1]
    host_state = lab.fleet.state().hosts[name]
    nspawn, leader = host_state.process(), host_state.leader
    assert nspawn is not None and leader is not None
    os.kill(nspawn.pid, signal.SIGKILL)
    lab.reset(name)
    assert not ProcessRef.from_dict(leader).alive()
    assert lab.host(name).service("montecarlo").is_running
    assert lab.address(name) in lab.host(name).interface("host0").addresses


def test_lab_up_is_idempotent(lab: Lab) -> None:
    before = {h.name: h.nspawn for h in lab.fleet.state().hosts.values()}
    lab.fleet.up(len(lab.names))
    after = {h.name: h.nspawn for h in lab.fleet.state().hosts.values()}
    assert before == after
    assert all(row["running"] and row["forwarders"] == 2 for row in lab.fleet.status())


def test_lab_down_stops_exactly_its_own_processes(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        fleet = Fleet(LabSettings.isolated(tmp_path / "lifecycle", "lc"))
        fleet.up(1)
        state = fleet.state()
        host = state.hosts["lc-1"]
        refs = [ProcessRef.from_dict(host.nspawn or {})] + [ProcessRef.from_dict(f) for f in host.forwarders]
        assert all(ref.alive() for ref in refs)
        assert Path(host.root).is_mount()
        assert fleet.settings.inventory.exists()

        assert fleet.down() == 1
        assert not any(ref.alive() for ref in refs)
        assert not Path(host.root).exists()
        assert not fleet.settings.inventory.exists()
        assert (
            f"10.213.{host.slot}.1/"
            not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
        )
        assert fleet.down() == 0  # safe to call twice
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_lab_check_playbook_runs_through_ansible_runner(lab: Lab) -> None:
    result = lab.playbook("lab-check.yml")
    assert result.rc == 0, result.stdout
    assert result.total("failures") == 0 and result.total("dark") == 0
    assert sorted(result.per_host()) == sorted(lab.names)

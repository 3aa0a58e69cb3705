"""`preaudit harden` on real lab hosts: a converge with a waiver, a rolling rollout that stops at
the first failed batch, a host that goes down in the middle of a converge, and firewall and sshd
changes that the host rolls back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanners.harden import EventCollector, HardenOptions, load_events, run_harden
from tests.integration.conftest import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]
# Content, mode and ownership of everything under /etc: a host the run never touched keeps it.
ETC_LISTING = (
    "find /etc -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g\\n' | sort; "
    "find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum"
)
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.MULTILINE,
)


def harden(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "scanners.cli", "harden", "--no-progress", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return data


def shell(lab: Lab, name: str, command: str) -> str:
    result = lab.module("ansible.builtin.shell", command, pattern=name)
    for event in result.events:
        if event.get("event") == "runner_on_ok":
            return str(event["event_data"]["res"]["stdout"])
    raise AssertionError(f"{command!r} failed on {name}: {result.stdout[-2000:]}")


def etc_state(lab: Lab, name: str) -> set[str]:
    return set(shell(lab, name, ETC_LISTING).splitlines())


def test_converge_reports_per_host_and_per_control_and_keeps_the_run(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yml"
    waivers.write_text(
        yaml.safe_dump({
            "waivers": [{
                "control": "SSH-010",
                "resources": [fresh_host],
                "justification": "The data team's tunnel needs TCP forwarding until Q1.",
                "approver": "jane.doe@example.com",
                "expires": "2099-12-31",
            }]
        })
    )  # fmt: skip
    run_dir = tmp_path / "converge"
    done = harden("-i", str(lab.inventory), "--limit", fresh_host, "--waivers", str(waivers), "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run directory: {run_dir}" in done.stderr.replace("\n", "")
    result = summary(run_dir)
    assert (result["result"], result["exit_code"]) == ("ok", 0)
    host = result["hosts"][fresh_host]
    # The counters are the runner's own recap.
    stdout = (run_dir / "ansible" / "stdout").read_text()
    recap = {m["host"]: m.groupdict() for m in RECAP.finditer(stdout)}[fresh_host]
    assert {k: str(host[k]) for k in ("ok", "changed", "unreachable", "failed", "skipped")} == {
        k: recap[k] for k in ("ok", "changed", "unreachable", "failed", "skipped")
    }
    assert host["status"] == "changed" and host["changed"] > 10
    assert len(load_events(run_dir)) == result["ansible"]["events"] > 50
    controls = result["controls"]
    assert controls["SSH-010"]["waived"] == [fresh_host]
    assert controls["OS-AUD-002"]["not_applicable"] == [fresh_host]  # auditd cannot run in a container
    assert controls["SSH-004"]["applied"] == [fresh_host]
    assert fresh_host in controls["OS-PKG-008"]["changed"]  # the login banners were written
    assert "SSH-010" in done.stdout and "OS-AUD-002 not applied on 1 host(s)" in done.stdout
    # The waived control was left alone on the host.
    assert "AllowTcpForwarding" not in shell(lab, fresh_host, "cat /etc/ssh/sshd_config.d/00-preaudit-hardening.conf")

    # Check mode on the converged host: exit 0 and nothing on the host changes.
    before = etc_state(lab, fresh_host)
    checked = harden("-i", str(lab.inventory), "--limit", fresh_host, "--check", "--run-dir", str(tmp_path / "check"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert summary(tmp_path / "check")["options"]["check"] is True
    after = etc_state(lab, fresh_host)
    assert (before - after, after - before) == (set(), set())


def test_check_mode_on_a_fresh_host(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    checked = harden("-i", str(lab.inventory), "--limit", fresh_host, "--check", "--run-dir", str(tmp_path / "check"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_tagged_run_leaves_the_other_controls_in_place(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    dropin = "cat /etc/ssh/sshd_config.d/00-preaudit-hardening.conf"
    done = harden("-i", str(lab.inventory), "--limit", fresh_host, "--run-dir", str(tmp_path / "all"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MaxAuthTries" in shell(lab, fresh_host, dropin)
    tagged = harden(
        "-i", str(lab.inventory), "--limit", fresh_host, "--tags", "SSH-004", "--run-dir", str(tmp_path / "t")
    )
    assert tagged.returncode == 0, tagged.stdout + tagged.stderr
    assert summary(tmp_path / "t")["controls"]["SSH-005"]["not_selected"] == [fresh_host]
    assert "MaxAuthTries" in shell(lab, fresh_host, dropin)


def test_rolling_rollout_stops_at_the_first_failed_batch(lab: Lab, tmp_path: Path) -> None:
    first, *later = lab.names
    lab.reset(*lab.names)
    inventory = yaml.safe_load(lab.inventory.read_text())
    # The SSH preflight refuses an allow list that excludes the account Ansible connects as.
    inventory["all"]["children"]["simulation"]["hosts"][first]["ssh_hardening_allow_groups"] = ["nobody"]
    bad_inventory = tmp_path / "hosts.yml"
    bad_inventory.write_text(yaml.safe_dump(inventory))
    before = {name: etc_state(lab, name) for name in later}
    assert {name: etc_state(lab, name) for name in later} == before, "the hosts are still changing /etc on their own"

    run_dir = tmp_path / "rolling"
    done = harden("-i", str(bad_inventory), "--serial", "1", "--max-fail-percent", "0", "--run-dir", str(run_dir))

    assert done.returncode == 1, done.stdout + done.stderr
    result = summary(run_dir)
    assert result["options"]["serial"] == 1 and result["options"]["max_fail_percentage"] == 0
    assert result["hosts"][first]["status"] == "failed"
    assert result["hosts"][first]["failed_task"].startswith("SSH-019 |")
    assert result["controls"]["SSH-019"]["failed"] == [first]
    for name in later:
        assert result["hosts"][name]["status"] == "not_run"
        assert result["hosts"][name]["ok"] == 0
    # The later hosts were never contacted, and nothing under /etc changed there.
    assert not any(e.get("event_data", {}).get("host") in later for e in load_events(run_dir))
    for name in later:
        after = etc_state(lab, name)
        assert (before[name] - after, after - before[name]) == (set(), set()), name
    assert f"harden: {first} failed at 'SSH-019 |" in done.stderr


def test_a_host_stopped_mid_converge_fails_alone_and_converges_when_back(lab: Lab, tmp_path: Path) -> None:
    victim = lab.names[1]
    others = [n for n in lab.names if n != victim]
    lab.reset(*lab.names)
    stopped = threading.Event()
    stopper: list[threading.Thread] = []

    def power_off() -> None:
        lab.fleet.stop_host(victim)
        stopped.set()

    def on_change(collector: EventCollector) -> None:
        # Once the victim is inside its roles (a control's task has started), power it off.
        task = collector.hosts[victim].task
        if not stopper and re.match(r"^OS-[A-Z]+-\d{3} \|", task):
            thread = threading.Thread(target=power_off)
            stopper.append(thread)
            thread.start()

    options = HardenOptions(inventory=lab.inventory)
    run = run_harden(options, tmp_path / "interrupted", hosts=lab.names, on_change=on_change)
    stopper[0].join(timeout=60)
    assert stopped.is_set()

    assert run.exit_code == 1
    hosts = run.summary["hosts"]
    assert hosts[victim]["status"] in ("unreachable", "failed"), hosts[victim]
    assert hosts[victim]["message"]
    for name in others:
        assert hosts[name]["status"] == "changed", hosts[name]
    assert summary(tmp_path / "interrupted")["hosts"][victim]["status"] == hosts[victim]["status"]

    lab.fleet.start_host(victim)
    again = run_harden(options, tmp_path / "back", hosts=lab.names)
    assert again.exit_code == 0, again.summary["hosts"]
    assert again.summary["hosts"][victim]["changed"] > 0  # it picks up where it stopped
    settled = run_harden(options, tmp_path / "settled", hosts=lab.names)
    assert settled.exit_code == 0
    # Nothing left to change. One known role bug is tolerated here (and tracked by
    # test_a_fresh_converge_changes_nothing_when_run_again): OS-PRM-011 fixes the log files that the
    # same run's package installs created only on the next run.
    assert changed_tasks(tmp_path / "settled") <= {
        (victim, "OS-PRM-011 | Remove group write and other access from log files")
    }


def changed_tasks(run_dir: Path) -> set[tuple[str, str]]:
    return {
        (e["event_data"]["host"], e["event_data"]["task"])
        for e in load_events(run_dir)
        if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")
    }


def test_a_fresh_converge_changes_nothing_when_run_again(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    for name in ("first", "again"):
        done = harden("-i", str(lab.inventory), "--limit", fresh_host, "--run-dir", str(tmp_path / name))
        assert done.returncode == 0, done.stdout + done.stderr
    assert changed_tasks(tmp_path / "again") == set()


def cut_off_and_rolled_back(
    lab: Lab, host: str, playbook: str, extravars: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """Run ``playbook`` with a change that cuts SSH off; the host must roll it back and the run say so."""
    variables = run_dir.parent / f"{run_dir.name}-vars.yml"
    variables.write_text(yaml.safe_dump(extravars))
    done = harden(
        "-i", str(lab.inventory), "--limit", host, "--playbook", playbook,
        "--extra-vars", f"@{variables}", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "change cut off new SSH connections" in (run_dir / "ansible" / "stdout").read_text()
    result = summary(run_dir)
    assert result["hosts"][host]["status"] == "failed"
    return result


def test_firewall_change_that_cuts_ssh_is_rolled_back_and_reported(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    gateway = lab.address(fresh_host).rsplit(".", 1)[0] + ".1"
    extravars = {
        "os_hardening_firewall_extra_input_rules": [f"ip saddr {gateway} tcp dport 22 ct state new drop"],
        "os_hardening_firewall_rollback_seconds": 8,
    }
    result = cut_off_and_rolled_back(lab, fresh_host, "os.yml", extravars, tmp_path / "run")
    assert result["controls"]["OS-FW-002"]["rolled_back"] == [fresh_host]
    # SSH works again and nothing of the change remains loaded or persisted.
    assert "preaudit_filter" not in shell(lab, fresh_host, "nft list tables; cat /etc/nftables.conf 2>/dev/null; true")


def test_sshd_change_that_cuts_ssh_is_rolled_back_and_reported(lab: Lab, fresh_host: str, tmp_path: Path) -> None:
    dropin = "/etc/ssh/sshd_config.d/00-preaudit-hardening.conf"
    user = lab.fleet.ADMIN_USER
    # Valid for sshd -t, so it is applied; the user Ansible connects as can no longer log in.
    extravars = {"ssh_hardening_dropin_overwrite": {"DenyUsers": user}, "ssh_hardening_change_rollback_seconds": 8}
    result = cut_off_and_rolled_back(lab, fresh_host, "ssh.yml", extravars, tmp_path / "run")
    assert result["controls"]["SSH-005"]["rolled_back"] == [fresh_host]  # MaxAuthTries was in the drop-in
    # SSH works again (shell() logs in as the same user) and the host is as before the run.
    effective = shell(lab, fresh_host, f"test ! -e {dropin} && sshd -T | grep -Ei '^(denyusers|maxauthtries) '")
    assert user not in effective and "maxauthtries 6" in effective.lower()

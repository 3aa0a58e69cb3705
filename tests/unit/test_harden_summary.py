"""The run summary of `preaudit harden`, derived from ansible-runner events alone."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from scanners import harden
from scanners.ansible_run import RunResult
from scanners.catalog import default_catalog
from scanners.cli import main
from scanners.cli.harden_cmd import print_summary
from scanners.harden import EventCollector, HardenOptions, build_summary, load_events, run_harden

OS_TASKS = "/project/roles/os_hardening/tasks/main.yml:3"
_counter = itertools.count(1)


def event(
    kind: str, host: str | None = None, task: str = "", action: str = "ansible.builtin.command", **data: Any
) -> dict[str, Any]:
    event_data: dict[str, Any] = {"task": task, "task_action": action, "resolved_action": action, "task_path": OS_TASKS}
    if host is not None:
        event_data["host"] = host
    event_data.update(data)
    return {"event": kind, "event_data": event_data, "counter": next(_counter)}


def ok(
    host: str, task: str, action: str = "ansible.builtin.command", changed: bool = False, **res: Any
) -> dict[str, Any]:
    return event("runner_on_ok", host, task, action, res={"changed": changed, **res}, duration=0.4)


def facts(host: str, task: str, **values: Any) -> dict[str, Any]:
    return ok(host, task, "ansible.builtin.set_fact", ansible_facts=values)


def stats(**per_key: dict[str, int]) -> dict[str, Any]:
    keys = ("ok", "changed", "failures", "skipped", "dark", "rescued", "ignored", "processed")
    data: dict[str, Any] = {k: per_key.get(k, {}) for k in keys}
    return {"event": "playbook_on_stats", "event_data": data, "counter": next(_counter)}


OS_CONTROLS = [c.id for c in default_catalog().by_role("os_hardening")]
ACTIVE = [c for c in OS_CONTROLS if c not in ("OS-FS-002", "OS-PKG-001")]
MANAGED = {
    "files": [
        {"path": "/etc/issue", "controls": ["OS-PKG-008"], "area": "packages", "content": "x"},
        {"path": "/etc/profile.d/60-preaudit.sh", "controls": ["OS-ACC-006", "OS-ACC-007"], "area": "accounts"},
    ],
    "lines": [{"path": "/etc/login.defs", "controls": ["OS-ACC-004"], "regexp": "^PASS", "line": "PASS_MAX_DAYS 365"}],
}


def fleet_events() -> list[dict[str, Any]]:
    """a converges, b fails half-way, c is unreachable from the start, d is never reached."""
    summary = [
        {"control": "OS-AUD-002", "action": "not_applied", "reason": "auditd cannot run in a container"},
        {"control": "OS-KRN-001", "action": "not_applied", "reason": "read-only kernel", "target": "kernel.sysrq"},
        {"control": "OS-PRM-008", "action": "reported", "reason": "unowned", "target": "/opt/x.tar"},
        {"control": "OS-FS-002", "action": "waived", "reason": "active waiver"},
    ]
    events = [event("playbook_on_start"), event("playbook_on_play_start")]
    for host in ("a", "b"):
        events += [
            event("runner_on_start", host, "Preaudit | Load the waiver file"),
            facts(host, "Preaudit | Load the waiver file", preaudit_waived=["OS-FS-002"]),
            facts(host, "OS | Name the controls this run applies", _os_hardening_active=ACTIVE),
            facts(host, "OS | Derive the decisions", os_hardening_summary=summary[3:], _os_hardening_only=None),
            ok(
                host,
                "OS | Write the configuration files",
                "managed_files",
                changed=host == "a",
                changed_paths=["/etc/issue"] if host == "a" else [],
                invocation={"module_args": MANAGED},
            ),
            ok(host, "SSH-019 | Refuse an allow list that excludes Ansible", "ansible.builtin.assert"),
        ]
    events += [
        event(
            "runner_on_unreachable", "c", "OS | Inspect the host", res={"msg": "Failed to connect to the host via ssh"}
        ),
        facts("a", "OS-KRN-001 | Record the settings not settable here", os_hardening_summary=summary),
        ok("a", "OS-PRM-001 | Fix owner and mode", "ansible.builtin.file", changed=True),
        event("runner_item_on_failed", "b", "OS-PRM-001 | Fix owner and mode", res={"msg": "item failed"}),
        event("runner_on_start", "b", "OS-PRM-001 | Fix owner and mode"),
        event(
            "runner_on_failed",
            "b",
            "OS-PRM-001 | Fix owner and mode",
            "ansible.builtin.file",
            res={"msg": "chmod failed:\n read-only file system"},
            duration=0.2,
        ),
        event("runner_on_failed", "a", "OS | Probe", res={"msg": "ignored"}, ignore_errors=True),
        event("runner_on_skipped", "a", "OS-FS-001 | Remount", res={}),
        stats(
            ok={"a": 8, "b": 5},
            changed={"a": 2},
            failures={"b": 1},
            skipped={"a": 1},
            dark={"c": 1},
            processed={"a": 1, "b": 1, "c": 1},
        ),
    ]
    return events


def summarise(
    events: list[dict[str, Any]], hosts: list[str], rc: int | None = 2, status: str = "failed"
) -> tuple[dict[str, Any], int]:
    collector = EventCollector(hosts)
    for item in events:
        collector(item)
    now = datetime.now(UTC)
    return build_summary(
        collector,
        HardenOptions(inventory=Path("hosts.yml"), check=False),
        run_id="r1",
        run_dir=Path("runs/r1"),
        started=now,
        finished=now,
        rc=rc,
        status=status,
    )


def test_hosts_get_the_runners_counters_and_a_state() -> None:
    summary, code = summarise(fleet_events(), ["a", "b", "c", "d"])
    hosts = summary["hosts"]
    assert {name: h["status"] for name, h in hosts.items()} == {
        "a": "changed",
        "b": "failed",
        "c": "unreachable",
        "d": "not_run",
    }
    assert {k: hosts["a"][k] for k in ("ok", "changed", "failed", "skipped", "unreachable")} == {
        "ok": 8,
        "changed": 2,
        "failed": 0,
        "skipped": 1,
        "unreachable": 0,
    }
    assert hosts["b"]["failed_task"] == "OS-PRM-001 | Fix owner and mode"
    assert hosts["b"]["message"] == "chmod failed: read-only file system"
    assert "Failed to connect" in hosts["c"]["message"]
    assert "never started" in hosts["d"]["message"]
    assert summary["totals"] == {"hosts": 4, "failed": 1, "unreachable": 1, "not_run": 1, "changed": 1, "ok": 0}
    assert (code, summary["result"], summary["exit_code"]) == (1, "failed", 1)


def states(summary: dict[str, Any], control: str) -> dict[str, list[str]]:
    entry = summary["controls"][control]
    keys = (*harden.CONTROL_STATES, "changed", "partly_not_applied", "reported")
    return {k: entry[k] for k in keys if entry[k]}


def test_controls_are_judged_per_host_from_the_events() -> None:
    summary, _ = summarise(fleet_events(), ["a", "b", "c", "d"])
    # Every control of the roles that ran has an entry; the never-reached host has none.
    assert set(OS_CONTROLS) <= set(summary["controls"])
    assert summary["controls"]["OS-FS-002"]["title"]
    assert states(summary, "OS-FS-002") == {"waived": ["a", "b"], "not_reached": ["c"]}
    assert states(summary, "OS-PKG-001") == {"not_selected": ["a", "b"], "not_reached": ["c"]}
    assert states(summary, "OS-AUD-002") == {"not_applicable": ["a"], "not_reached": ["b", "c"]}
    # A target named in a not_applied entry leaves the rest of the control applied.
    assert states(summary, "OS-KRN-001") == {"applied": ["a"], "not_reached": ["b", "c"], "partly_not_applied": ["a"]}
    assert states(summary, "OS-PRM-008") == {"reported_only": ["a"], "reported": ["a"], "not_reached": ["b", "c"]}
    # managed_files: a changed path marks its controls changed; on the failed host, the files
    # written before the failure still count as applied.
    assert states(summary, "OS-PKG-008") == {"applied": ["a", "b"], "not_reached": ["c"], "changed": ["a"]}
    assert states(summary, "OS-ACC-004") == {"applied": ["a", "b"], "not_reached": ["c"]}
    assert states(summary, "OS-PRM-001") == {"applied": ["a"], "failed": ["b"], "not_reached": ["c"], "changed": ["a"]}
    # An assertion that passed proves nothing was applied.
    assert "SSH-019" in summary["controls"]
    assert states(summary, "SSH-019") == {"not_reached": ["b", "c"], "skipped": ["a"]}
    # Notes: what was not applied or only reported, per host (waivers of catalog controls are in the table).
    assert {(n["host"], n["control"], n["action"]) for n in summary["notes"]} == {
        ("a", "OS-AUD-002", "not_applied"),
        ("a", "OS-KRN-001", "not_applied"),
        ("a", "OS-PRM-008", "reported"),
    }


def test_roles_without_an_active_fact_fall_back_to_their_tasks() -> None:
    tls = "/project/roles/tls_hardening/tasks/main.yml:1"
    events = [
        event("runner_on_ok", "a", "TLS-001 | Write nginx TLS settings", res={"changed": True}, task_path=tls),
        event("runner_on_skipped", "a", "TLS-002 | Only when needed", res={}, task_path=tls),
        stats(ok={"a": 1}, changed={"a": 1}, processed={"a": 1}),
    ]
    summary, code = summarise(events, ["a"], rc=0, status="successful")
    assert code == 0
    assert summary["roles"] == ["tls_hardening"]
    assert states(summary, "TLS-001") == {"applied": ["a"], "changed": ["a"]}
    assert states(summary, "TLS-002") == {"skipped": ["a"]}
    assert states(summary, "TLS-003") == {"not_selected": ["a"]}


@pytest.mark.parametrize(
    ("rc", "status", "with_stats", "code", "result"),
    [
        (0, "successful", True, 0, "ok"),
        (4, "failed", False, 3, "error"),  # a syntax error: no recap at all
        (250, "failed", True, 3, "error"),  # the recap came, yet ansible-playbook failed
        (None, "canceled", False, 130, "interrupted"),
    ],
)
def test_exit_codes(rc: int | None, status: str, with_stats: bool, code: int, result: str) -> None:
    events = [facts("a", "Preaudit | Load", preaudit_waived=[])]
    if with_stats:
        events.append(stats(ok={"a": 1}, processed={"a": 1}))
    summary, exit_code = summarise(events, ["a"], rc=rc, status=status)
    assert (exit_code, summary["result"]) == (code, result)


def test_live_progress_follows_the_events() -> None:
    seen: list[str] = []
    collector = EventCollector(["a", "b"], on_change=lambda c: seen.append(c.hosts["a"].state))
    assert [h.state for h in collector.snapshot()] == ["waiting", "waiting"]
    collector(event("runner_on_start", "a", "OS | Inspect the host"))
    assert (collector.hosts["a"].state, collector.hosts["a"].task) == ("running", "OS | Inspect the host")
    collector(ok("a", "OS | Inspect the host", changed=True))
    collector(event("runner_item_on_ok", "a", "OS | loop", res={"changed": True}))
    collector(event("runner_on_failed", "a", "OS | tolerated", res={"msg": "x"}, ignore_errors=True))
    progress = collector.snapshot()[0]
    assert (progress.ok, progress.changed, progress.failed) == (2, 1, 0)
    collector(stats(ok={"a": 2}, changed={"a": 1}, processed={"a": 1}))
    assert [h.state for h in collector.snapshot()] == ["changed", "not_run"]
    assert seen[-1] == "changed"


def fake_runner(events: list[dict[str, Any]], rc: int = 2) -> Callable[..., RunResult]:
    def run_playbook(playbook: str, inventory: Path, private_dir: Path, **kwargs: Any) -> RunResult:
        artifacts = kwargs["artifact_dir"] / kwargs["ident"]
        (artifacts / "job_events").mkdir(parents=True)
        (artifacts / "stdout").write_text("PLAY RECAP\n")
        for item in events:
            kwargs["event_handler"](item)
            (artifacts / "job_events" / f"{item['counter']}-x.json").write_text(json.dumps(item))
        assert kwargs["extravars"]["preaudit_serial"] == 1
        assert kwargs["tags"] == "OS-PRM-001,os_kernel"
        return RunResult(rc, "failed" if rc else "successful", {}, artifacts)

    return run_playbook


INVENTORY = "all:\n  hosts:\n    a:\n    b:\n    c:\n    d:\n"


def test_run_writes_the_summary_and_keeps_the_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    monkeypatch.setattr(harden, "run_playbook", fake_runner(fleet_events()))
    options = HardenOptions(inventory=inventory, serial=1, tags=("OS-PRM-001", "os_kernel"))
    run = run_harden(options, tmp_path / "run")
    assert run.exit_code == 1
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written == run.summary
    assert written["schema"] == "preaudit-harden-summary/1"
    assert written["options"]["serial"] == 1
    assert written["ansible"] == {"rc": 2, "status": "failed", "artifacts": "ansible", "events": len(fleet_events())}
    assert written["slowest_tasks"][0]["longest_seconds"] == 0.4
    assert len(load_events(tmp_path / "run")) == len(fleet_events())


def test_summary_is_written_when_the_run_is_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: Any, **kwargs: Any) -> RunResult:
        kwargs["event_handler"](event("runner_on_start", "a", "OS | Inspect the host"))
        raise KeyboardInterrupt

    monkeypatch.setattr(harden, "run_playbook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_harden(HardenOptions(inventory=tmp_path / "x"), tmp_path / "run", hosts=["a"])
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (written["result"], written["exit_code"]) == ("interrupted", 130)


def test_cli_prints_hosts_controls_and_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    monkeypatch.setattr(harden, "run_playbook", fake_runner(fleet_events()))
    monkeypatch.setenv("COLUMNS", "200")
    code = main(
        [
            "harden",
            "-i",
            str(inventory),
            "--serial",
            "1",
            "--tags",
            "OS-PRM-001,os_kernel",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    for text in ("hosts", "not_run", "unreachable", "OS-PRM-001 | Fix owner and mode: chmod failed", "controls"):
        assert text in out
    assert "OS-AUD-002 not applied on 1 host(s): auditd cannot run in a container" in out
    assert "OS-KRN-001 not applied on 1 host(s): read-only kernel [kernel.sysrq]" in out
    assert "4 host(s): 1 failed, 1 unreachable, 1 not run, 1 changed" in out
    assert f"run directory: {tmp_path / 'r'}" in err.replace("\n", "")
    assert "harden: b failed at 'OS-PRM-001 | Fix owner and mode'" in err


def test_cli_json_output_is_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    monkeypatch.setattr(harden, "run_playbook", fake_runner(fleet_events()))
    argv = ["harden", "-i", str(inventory), "--serial", "1", "--tags", "OS-PRM-001,os_kernel", "--json"]
    code = main([*argv, "--run-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1
    assert json.loads(out) == json.loads((tmp_path / "r" / "summary.json").read_text())


def test_cli_reports_a_play_that_could_not_run_as_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)

    def syntax_error(*_args: Any, **kwargs: Any) -> RunResult:
        artifacts = kwargs["artifact_dir"] / kwargs["ident"]
        artifacts.mkdir(parents=True)
        (artifacts / "stdout").write_text("ERROR! the role 'tls_hardening' was not found in roles\n")
        return RunResult(1, "failed", {}, artifacts)

    monkeypatch.setattr(harden, "run_playbook", syntax_error)
    code = main(["harden", "-i", str(inventory), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 3
    assert "preaudit: error: ansible-playbook could not run the play: the role 'tls_hardening' was not found" in err


def test_summary_table_in_check_mode_says_would_be_applied() -> None:
    summary, _ = summarise(fleet_events(), ["a", "b", "c", "d"])
    summary["options"]["check"] = True
    console = Console(record=True, width=200)
    print_summary(console, summary)
    text = console.export_text()
    assert "hosts (check mode)" in text
    assert "applied = would be applied" in text


def test_a_control_a_role_recorded_as_failed_is_failed_and_the_others_applied() -> None:
    # The role rescued the failing task, recorded it and applied every other control; the host's
    # run still ends as failed (the play's last task), and the summary names the control and why.
    failed = {"control": "OS-AUD-001", "action": "failed", "reason": "package auditd cannot be installed"}
    events = [
        facts("a", "OS | Name the controls this run applies", _os_hardening_active=ACTIVE),
        facts("a", "OS-AUD-001 | Record the controls whose package cannot be installed", os_hardening_summary=[failed]),
        ok("a", "OS-PRM-001 | Fix owner and mode", "ansible.builtin.file", changed=True),
        event(
            "runner_on_failed",
            "a",
            "Preaudit | Fail the host when a control could not be applied",
            "ansible.builtin.fail",
            res={"msg": "1 control(s) could not be applied"},
        ),
        stats(ok={"a": 3}, changed={"a": 1}, failures={"a": 1}, processed={"a": 1}),
    ]
    summary, code = summarise(events, ["a"])
    assert code != 0
    assert states(summary, "OS-AUD-001") == {"failed": ["a"]}
    assert states(summary, "OS-PRM-001") == {"applied": ["a"], "changed": ["a"]}
    assert ("a", "OS-AUD-001", "failed") in {(n["host"], n["control"], n["action"]) for n in summary["notes"]}

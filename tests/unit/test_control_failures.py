"""One control that cannot be applied never stops the others: the filters that record a failed
control, and managed_files leaving a refused file alone while it writes the others."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.module_loader import ROOT, library, load_file

MANAGED = library("managed_files")
FILTERS = load_file("preaudit_filters", ROOT / "filter_plugins" / "preaudit.py")
failed_controls = FILTERS.failed_controls
failed_package_entries = FILTERS.failed_package_entries
failure_entries = FILTERS.failure_entries
failure_message = FILTERS.failure_message


def test_a_failed_task_names_its_controls_from_its_name_and_tags() -> None:
    task = {"name": "OS-KRN-001 | Persist the kernel settings", "tags": ["OS-KRN-001", "OS-NET-001", "always"]}
    entries = failure_entries(task, {"msg": "sysctl: permission denied\nmore"}, False, "kernel")
    assert [e["control"] for e in entries] == ["OS-KRN-001", "OS-NET-001"]
    assert {e["action"] for e in entries} == {"failed"}
    assert entries[0]["reason"] == (
        "OS-KRN-001 | Persist the kernel settings: sysctl: permission denied more"
        " (the rest of the kernel area was not attempted)"
    )


def test_a_failure_in_check_mode_is_not_checked_and_fails_nothing() -> None:
    entries = failure_entries({"name": "TLS-005 | Install", "tags": []}, {"msg": "no package"}, True)
    assert entries == [{"control": "TLS-005", "action": "not_checked", "reason": "TLS-005 | Install: no package"}]
    assert failed_controls(entries) == []


def test_packages_that_cannot_be_installed_fail_their_own_controls() -> None:
    loop = {
        "results": [
            {"item": "auditd", "failed": False, "changed": True},
            {"item": "nftables", "failed": True, "msg": "No package matching 'nftables' is available"},
            {"item": "extra-tool", "failed": True, "msg": "No package matching 'extra-tool' is available"},
        ]
    }
    entries = failed_package_entries(loop, {"auditd": "OS-AUD-001", "nftables": "OS-FW-001"}, False, "os_packages")
    assert [(e["control"], e["target"]) for e in entries] == [("OS-FW-001", "nftables"), ("os_packages", "extra-tool")]
    assert "cannot be installed from the host's package sources" in entries[0]["reason"]
    assert failed_controls(entries) == ["OS-FW-001", "os_packages"]


def test_the_failure_message_lists_each_control_and_why() -> None:
    entries = [
        {"control": "OS-FW-002", "action": "failed", "reason": "validation failed", "target": "/etc/nftables.conf"},
        {"control": "OS-FS-002", "action": "waived", "reason": "active waiver"},
    ]
    message = failure_message(entries)
    assert message.startswith("1 control(s) could not be applied on this host (OS-FW-002)")
    assert "OS-FW-002 [/etc/nftables.conf]: validation failed" in message


def _run_module(
    args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    monkeypatch.setattr(sys, "argv", ["managed_files"])
    import ansible.module_utils.basic as basic

    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    with pytest.raises(SystemExit):
        MANAGED.main()
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_isolate_leaves_a_refused_file_alone_and_writes_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused, good = tmp_path / "refused.conf", tmp_path / "good.conf"
    refused.write_text("old\n")
    files = [
        {"path": str(refused), "content": "new\n", "validate": "false %s", "controls": ["OS-FW-002"]},
        {"path": str(good), "content": "fine\n", "controls": ["OS-ACC-006"]},
    ]
    lines = [{"path": str(tmp_path / "missing.defs"), "regexp": "^X", "line": "X 1", "controls": ["OS-ACC-004"]}]
    result = _run_module({"files": files, "lines": lines, "isolate": True}, monkeypatch, capsys)
    assert not result.get("failed"), result
    assert refused.read_text() == "old\n"
    assert good.read_text() == "fine\n"
    assert result["changed_paths"] == [str(good)]
    assert [(f["path"], f["controls"]) for f in result["failed_entries"]] == [
        (str(refused), ["OS-FW-002"]),
        (str(tmp_path / "missing.defs"), ["OS-ACC-004"]),
    ]
    assert "validation failed (false %s)" in result["failed_entries"][0]["reason"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a refused candidate was left behind"


def test_without_isolate_a_refused_file_fails_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [{"path": str(tmp_path / "x.conf"), "content": "new\n", "validate": "false %s"}]
    result = _run_module({"files": files}, monkeypatch, capsys)
    assert result["failed"] is True
    assert "validation failed" in result["msg"]
    assert not (tmp_path / "x.conf").exists()


def test_controls_that_configure_a_missing_package_fail_with_it() -> None:
    loop = {"results": [{"item": "nftables", "failed": True, "msg": "no available installation candidate"}]}
    entries = failed_package_entries(
        loop, {"nftables": "OS-FW-001"}, False, "os_packages", {"OS-FW-001": ["OS-FW-002", "OS-FW-003"]}
    )
    assert [e["control"] for e in entries] == ["OS-FW-001", "OS-FW-002", "OS-FW-003"]
    assert entries[1]["reason"].startswith("needs package nftables (OS-FW-001)")


def test_a_long_validation_message_keeps_its_start_and_the_refusal_at_its_end() -> None:
    output = "unable to configure the Docker daemon with file /tmp/x:\n" + "context " * 100 + "\nbad: no-such-option"
    [entry] = FILTERS.failed_file_entries(
        {"failed_entries": [{"path": "/etc/docker/daemon.json", "controls": ["CTR-D-001"], "reason": output}]}
    )
    assert entry["reason"].startswith("unable to configure the Docker daemon")
    assert entry["reason"].endswith("bad: no-such-option")
    assert len(entry["reason"]) <= FILTERS.REASON_LENGTH
    assert "\n" not in entry["reason"]

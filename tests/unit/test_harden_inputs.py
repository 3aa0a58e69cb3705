"""`preaudit harden` refuses bad input with exit 2 and one line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanners.cli import main
from scanners.errors import InputError
from scanners.harden import (
    HardenOptions,
    parse_extra_vars,
    parse_percent,
    parse_serial,
    parse_tags,
    prepare_run_dir,
)
from scanners.inventory import inventory_hosts, resolve_hosts

INVENTORY = """\
all:
  vars:
    ansible_user: ops
  children:
    web:
      hosts:
        web-1: {ansible_host: 127.0.0.1}
        web-2: {ansible_host: 127.0.0.1}
    db:
      hosts:
        db-1:
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return path


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("3", 3), ("25%", "25%"), ("100%", "100%"), (" 2 ", 2)])
def test_serial_accepts_a_batch_size_or_a_percentage(text: str, value: int | str) -> None:
    assert parse_serial(text) == value


@pytest.mark.parametrize("text", ["0", "150%", "0%", "abc", "-1", "1.5", "", "10 %"])
def test_serial_refuses_nonsense(text: str) -> None:
    with pytest.raises(InputError, match="--serial"):
        parse_serial(text)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("100", 100), ("25%", 25)])
def test_max_fail_percent(text: str, value: int) -> None:
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["101", "-1", "x", ""])
def test_max_fail_percent_refuses_nonsense(text: str) -> None:
    with pytest.raises(InputError, match="--max-fail-percent"):
        parse_percent(text)


def test_tags_are_control_ids_or_tags() -> None:
    assert parse_tags("SSH-004, OS-KRN-001,ssh_hardening", "--tags") == ("SSH-004", "OS-KRN-001", "ssh_hardening")
    with pytest.raises(InputError, match="unknown control id 'SSH-999'"):
        parse_tags("SSH-004,SSH-999", "--tags")
    with pytest.raises(InputError, match="--skip"):
        parse_tags("SSH-004,,", "--skip")
    with pytest.raises(InputError, match="not a control id"):
        parse_tags("SSH-004;rm", "--tags")


def test_extra_vars_from_pairs_and_files(tmp_path: Path) -> None:
    extra = tmp_path / "vars.yml"
    extra.write_text("ssh_hardening_allow_groups: [ops]\n")
    assert parse_extra_vars(["a=1", "b=[x, y]", f"@{extra}", "c="]) == {
        "a": 1,
        "b": ["x", "y"],
        "ssh_hardening_allow_groups": ["ops"],
        "c": "",
    }
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_extra_vars(["novalue"])
    with pytest.raises(InputError, match="cannot read"):
        parse_extra_vars([f"@{tmp_path / 'missing.yml'}"])
    (tmp_path / "list.yml").write_text("- a\n")
    with pytest.raises(InputError, match="mapping"):
        parse_extra_vars([f"@{tmp_path / 'list.yml'}"])


def test_options_become_the_playbooks_extra_vars(tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yml"
    options = HardenOptions(
        inventory=tmp_path / "hosts.yml",
        serial="25%",
        max_fail_percentage=0,
        waivers_file=waivers,
        extra_vars={"x": 1},
    )
    assert options.extravars() == {
        "x": 1,
        "preaudit_serial": "25%",
        "preaudit_max_fail_percentage": 0,
        "preaudit_waivers_file": str(waivers.resolve()),
    }
    assert HardenOptions(inventory=tmp_path).extravars() == {}


def test_inventory_hosts_come_from_ansible_inventory(inventory: Path) -> None:
    assert resolve_hosts(inventory) == ["web-1", "web-2", "db-1"]
    assert resolve_hosts(inventory, "web") == ["web-1", "web-2"]
    assert resolve_hosts(inventory, "all:!web-2") == ["web-1", "db-1"]
    with pytest.raises(InputError, match="--limit nope matches no host"):
        resolve_hosts(inventory, "nope")


def test_inventory_listing_without_groups() -> None:
    listing = {
        "_meta": {"hostvars": {"a": {}, "b": {}}},
        "all": {"children": ["ungrouped"]},
        "ungrouped": {"hosts": ["c"]},
    }
    assert inventory_hosts(listing) == ["c", "a", "b"]
    nested = {"all": {"children": ["web", "db"]}, "db": {"hosts": ["d"]}, "web": {"hosts": ["w"], "children": ["db"]}}
    assert inventory_hosts(nested) == ["w", "d"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  hosts: [a\n", "is malformed"),
        ("all:\n  hosts:\n    a:\n  childs:\n    web: {}\n", "is malformed: Skipping unexpected key (childs)"),
        ("", "has no hosts"),
    ],
)
def test_malformed_inventory_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_hosts(path)


def test_a_run_directory_is_never_reused(tmp_path: Path) -> None:
    run_dir = prepare_run_dir(tmp_path / "runs" / "one")
    assert run_dir.is_dir()
    prepare_run_dir(run_dir)  # empty: fine
    (run_dir / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="already holds a run"):
        prepare_run_dir(run_dir)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a directory"):
        prepare_run_dir(tmp_path / "file")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["harden", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--serial", "0"], "--serial 0: the batch size must be at least 1"),
        (["--serial", "150%"], "--serial 150%: a percentage must be between 1% and 100%"),
        (["--serial", "abc"], "--serial 'abc'"),
        (["--max-fail-percent", "200"], "--max-fail-percent"),
        (["--tags", "NOPE-001"], "unknown control id 'NOPE-001'"),
        (["--limit", "nope"], "--limit nope matches no host"),
        (["--playbook", "missing.yml"], "no playbook missing.yml"),
        (["--forks", "0"], "--forks 0"),
    ],
)
def test_cli_refuses_bad_input_with_one_line(
    capsys: pytest.CaptureFixture[str],
    inventory: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "--inventory", str(inventory), *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_a_missing_or_malformed_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _cli(capsys, "--inventory", str(tmp_path / "none.yml"))
    assert (code, err.count("\n")) == (2, 1)
    assert "does not exist" in err
    bad = tmp_path / "bad.ini"
    bad.write_text("[web\nhost1 ansible_host=1.2.3.4\n")
    code, err = _cli(capsys, "--inventory", str(bad))
    assert (code, err.count("\n")) == (2, 1)
    assert "is malformed" in err


def test_cli_refuses_a_malformed_waiver_file_before_anything_runs(
    capsys: pytest.CaptureFixture[str], inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    waivers = tmp_path / "waivers.yml"
    waivers.write_text("waivers:\n  - control: SSH-010\n")
    code, err = _cli(capsys, "--inventory", str(inventory), "--waivers", str(waivers))
    assert code == 2
    assert "missing justification" in err
    code, err = _cli(capsys, "--inventory", str(inventory), "--waivers", str(tmp_path / "none.yml"))
    assert (code, "no such waiver file" in err) == (2, True)
    assert not (tmp_path / "runs").exists()

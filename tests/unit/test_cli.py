"""CLI conventions: help, version, exit codes and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanners import __version__
from scanners.cli import main

PREAUDIT = str(Path(sys.executable).parent / "preaudit")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would."""
    return subprocess.run([PREAUDIT, *args], capture_output=True, text=True, check=False)


def test_help_lists_subcommands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("lab", "catalog"):
        assert command in result.stdout


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"preaudit {__version__}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("fly",), "invalid choice: 'fly'"),
        (("lab", "up", "--hosts", "many"), "argument --hosts: invalid int value: 'many'"),
        (("lab", "up", "--hosts", "0"), "--hosts must be between 1 and 32, not 0"),
        (("lab", "up", "--prefix", "Bad_Prefix"), "lab prefix 'Bad_Prefix' must be"),
        (("catalog", "show", "NOPE-001"), "unknown control id 'NOPE-001'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("preaudit: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_catalog_list_json_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "list", "--json", "--area", "ssh"]) == 0
    controls = json.loads(capsys.readouterr().out)
    assert controls and all(c["area"] == "ssh" for c in controls)
    assert main(["catalog", "show", "SSH-002"]) == 0
    assert json.loads(capsys.readouterr().out)["check"]["key"] == "passwordauthentication"


def test_lab_doctor_prints_the_fix_for_missing_programs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda p: None if p in ("socat", "debootstrap") else real_which(p))
    code = main(["lab", "doctor"])
    out = capsys.readouterr().out
    assert code == 3
    assert "apt-get update && apt-get install -y debootstrap socat" in out

"""The secrets module: new random values for named keys, other lines untouched, a root-only backup,
and nothing but key names in its output."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.unit.module_loader import ROOT, library

ENV = library("env_secrets")
OLD = "old-value-9f4b2c7e1d0a"
TEXT = (
    f"# Monte Carlo settings\nDATABASE_URL=postgresql://u:p@db/x\nexport JWT_SECRET={OLD}\nAPI_KEY='{OLD}'\nPORT=8000\n"
)


def _run(tmp_path: Path, args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(payload))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "library" / "env_secrets.py"), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert OLD not in proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_replace_keys_rewrites_only_the_named_assignments() -> None:
    after = ENV.replace_keys(TEXT, {"JWT_SECRET": "NEW1", "API_KEY": "NEW2", "EXTRA": "NEW3"})
    assert after.splitlines() == [
        "# Monte Carlo settings",
        "DATABASE_URL=postgresql://u:p@db/x",
        "export JWT_SECRET=NEW1",
        "API_KEY=NEW2",
        "PORT=8000",
        "EXTRA=NEW3",
    ]


def test_generates_in_place_keeps_mode_and_a_private_backup(tmp_path: Path) -> None:
    env = tmp_path / "app" / ".env"
    env.parent.mkdir()
    env.write_text(TEXT)
    env.chmod(0o640)
    backups = tmp_path / "backups"
    args = {
        "files": [{"path": str(env), "generate": [{"name": "JWT_SECRET", "bytes": 32}]}],
        "backup_dir": str(backups),
    }

    checked = _run(tmp_path, args, check_mode=True)
    assert checked["changed"] and checked["files"] == [{"path": str(env), "generated": ["JWT_SECRET"], "backup": None}]
    assert env.read_text() == TEXT and not backups.exists()

    result = _run(tmp_path, args)
    assert result["changed"]
    new = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    secret = new["export JWT_SECRET"]
    assert len(secret) == 43 and secret != OLD and secret not in json.dumps(result)
    assert new["API_KEY"] == f"'{OLD}'"
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    backup = Path(result["files"][0]["backup"])
    assert backup.parent == backups and backup.read_text() == TEXT
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and stat.S_IMODE(backups.stat().st_mode) == 0o700

    again = _run(tmp_path, args)
    second = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)["export JWT_SECRET"]
    assert second != secret and Path(again["files"][0]["backup"]) != backup


def test_nothing_to_generate_changes_nothing_and_bad_names_are_refused(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(TEXT)
    assert _run(tmp_path, {"files": [{"path": str(env), "generate": []}]})["changed"] is False
    refused = _run(tmp_path, {"files": [{"path": str(env), "generate": [{"name": "A=B"}]}]})
    assert refused["failed"] and "not environment variable names: A=B" in refused["msg"]
    missing = _run(tmp_path, {"files": [{"path": str(tmp_path / "none"), "generate": [{"name": "X"}]}]})
    assert missing["failed"]
    assert env.read_text() == TEXT

"""Run playbooks and ad-hoc modules through ansible-runner's Python API."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from scanners.errors import InputError
from scanners.project import project_root

EventHandler = Callable[[dict[str, Any]], bool]
STAT_KEYS = ("ok", "changed", "failures", "skipped", "dark", "rescued", "ignored")


@dataclass(slots=True)
class RunResult:
    rc: int
    status: str
    stats: dict[str, dict[str, int]]
    artifact_dir: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def per_host(self) -> dict[str, dict[str, int]]:
        """{host: {ok, changed, failures, skipped, dark, ...}} with zeros filled in."""
        hosts = {h for counts in self.stats.values() for h in counts}
        return {h: {k: int(self.stats.get(k, {}).get(h, 0)) for k in STAT_KEYS} for h in sorted(hosts)}

    def total(self, key: str) -> int:
        return sum(int(v) for v in self.stats.get(key, {}).values())

    @property
    def stdout(self) -> str:
        path = self.artifact_dir / "stdout"
        return path.read_text(errors="replace") if path.exists() else ""


def _environment() -> dict[str, str]:
    root = project_root()
    bin_dir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }


def _check_inventory(inventory: Path) -> None:
    if not inventory.exists():
        raise InputError(f"inventory {inventory} does not exist (for the lab: `preaudit lab up`)")


def run_playbook(
    playbook: str,
    inventory: Path,
    private_dir: Path,
    *,
    limit: str | None = None,
    tags: str | None = None,
    skip_tags: str | None = None,
    check: bool = False,
    diff: bool = False,
    extravars: dict[str, Any] | None = None,
    forks: int | None = None,
    event_handler: EventHandler | None = None,
    keep_events: bool = False,
    artifact_dir: Path | None = None,
    ident: str | None = None,
    cancel_callback: Callable[[], bool] | None = None,
) -> RunResult:
    """Run ``playbooks/<playbook>``; artifacts go to ``artifact_dir/ident`` (default: under ``private_dir``)."""
    _check_inventory(inventory)
    root = project_root()
    path = root / "playbooks" / playbook
    if not path.exists():
        raise InputError(f"no playbook {playbook} in {root / 'playbooks'}")
    cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
    private_dir.mkdir(parents=True, exist_ok=True)
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(root),
        playbook=str(path),
        inventory=str(inventory.resolve()),
        envvars=_environment(),
        extravars=extravars or {},
        limit=limit,
        tags=tags,
        skip_tags=skip_tags,
        forks=forks,
        cmdline=cmdline or None,
        quiet=True,
        event_handler=event_handler,
        suppress_env_files=True,
        **({"artifact_dir": str(artifact_dir)} if artifact_dir else {}),
        **({"ident": ident} if ident else {}),
        **({"cancel_callback": cancel_callback} if cancel_callback else {}),
    )
    events = list(runner.events) if keep_events else []
    return RunResult(runner.rc, runner.status, runner.stats or {}, Path(runner.config.artifact_dir), events)


def run_module(
    module: str,
    module_args: str,
    inventory: Path,
    private_dir: Path,
    host_pattern: str = "all",
) -> RunResult:
    _check_inventory(inventory)
    private_dir.mkdir(parents=True, exist_ok=True)
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(project_root()),
        module=module,
        module_args=module_args,
        host_pattern=host_pattern,
        inventory=str(inventory.resolve()),
        envvars=_environment(),
        quiet=True,
        suppress_env_files=True,
    )
    return RunResult(
        runner.rc, runner.status, runner.stats or {}, Path(runner.config.artifact_dir), list(runner.events)
    )

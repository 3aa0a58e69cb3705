"""Reading an Ansible inventory the way a run will: through ``ansible-inventory``, strictly.

A source Ansible cannot parse, or a key it would skip, is an input error naming the problem,
instead of Ansible's multi-line warnings and a run that targets nobody.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scanners.ansible_run import _environment
from scanners.errors import EnvironmentProblem, InputError


def inventory_listing(inventory: Path, limit: str | None = None) -> dict[str, Any]:
    """``ansible-inventory --list`` of the hosts a run would target (``_meta.hostvars`` holds each
    host's variables, group variables merged); a malformed inventory or no host is refused."""
    if not inventory.exists():
        raise InputError(f"inventory {inventory} does not exist (for the lab: `preaudit lab up`)")
    argv = ["ansible-inventory", "-i", str(inventory.resolve()), "--list"]
    if limit:
        argv += ["--limit", limit]
    env = {
        **os.environ,
        **_environment(),
        # Without these, an unparsable source is a warning and the run targets nobody.
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1",
    }
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=120)
    except FileNotFoundError:
        raise EnvironmentProblem("ansible-inventory not found (install ansible-core)") from None
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"ansible-inventory did not read {inventory} within 120 s") from None
    if proc.returncode != 0:
        reason = _first_ansible_problem(proc.stderr)
        if limit and "no hosts" in reason.lower():
            raise InputError(f"--limit {limit} matches no host of {inventory}")
        raise InputError(f"inventory {inventory} is malformed: {reason}")
    ignored = [ln for ln in proc.stderr.splitlines() if "Skipping unexpected key" in ln]
    if ignored:  # a typo would silently drop a group's hosts or variables from the run
        raise InputError(f"inventory {inventory} is malformed: {_first_ansible_problem(ignored[0])}")
    try:
        listing = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise InputError(f"inventory {inventory}: ansible-inventory returned no readable listing") from None
    if not inventory_hosts(listing):
        if limit:
            raise InputError(f"--limit {limit} matches no host of {inventory}")
        raise InputError(f"inventory {inventory} has no hosts")
    return dict(listing)


def resolve_hosts(inventory: Path, limit: str | None = None) -> list[str]:
    """The hosts a run would target, in inventory order."""
    return inventory_hosts(inventory_listing(inventory, limit))


def inventory_hosts(listing: Mapping[str, Any]) -> list[str]:
    """Every host of an ``ansible-inventory --list`` document, in inventory order (groups walked from ``all``)."""
    seen: dict[str, None] = {}
    visited: set[str] = set()

    def walk(name: str) -> None:
        group = listing.get(name)
        if name in visited or not isinstance(group, Mapping):
            return
        visited.add(name)
        for host in group.get("hosts", []) or []:
            seen.setdefault(str(host), None)
        for child in group.get("children", []) or []:
            walk(str(child))

    walk("all")
    for name in listing:
        if name != "_meta":
            walk(name)
    for host in (listing.get("_meta") or {}).get("hostvars", {}) or {}:
        seen.setdefault(str(host), None)
    return list(seen)


def _first_ansible_problem(stderr: str) -> str:
    """The most specific one-line reason in ansible's stderr (warnings first, then errors)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("[WARNING]: Failed to parse", "[ERROR]:", "ERROR!", "[WARNING]:"):
        for line in lines:
            if line.startswith(prefix):
                text = line.split(":", 1)[1].strip() if line.startswith("[") else line.removeprefix("ERROR!").strip()
                return text[:300]
    return (lines[-1] if lines else "ansible-inventory failed")[:300]

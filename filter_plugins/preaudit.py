"""Jinja filters shared by the preaudit roles and playbooks (controller side)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from scanners.errors import InputError
    from scanners.waivers import parse_waivers
except ImportError:
    # Run as an AWX / Automation Platform project (or any checkout without `pip install`): the
    # execution environment has ansible-core only, and the package sits next to this directory.
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    from scanners.errors import InputError
    from scanners.waivers import parse_waivers


def waived_controls(waivers: Any, host: str, today: str | None = None) -> list[str]:
    """Control ids with an active waiver for ``host``: the roles leave them alone there."""
    try:
        waiver_set = parse_waivers(waivers or None, "waivers")
    except InputError as exc:
        raise AnsibleFilterError(str(exc)) from None
    day = date.fromisoformat(today) if today else None
    return waiver_set.active_controls(host, day)


def summary_entries(controls: Any, action: str, reason: str = "", targets: Any = None) -> list[dict[str, str]]:
    """Entries of the end-of-run summary: what was not done on a host and why.

    With ``targets``, one entry per target (a file, a setting) of the single control given.
    """
    if targets is not None:
        return [{"control": str(controls), "action": action, "reason": reason, "target": str(t)} for t in targets]
    if isinstance(controls, str):
        controls = [controls]
    return [{"control": str(c), "action": action, "reason": reason} for c in controls]


def summary_by_owner(
    targets: Any, owners: Any, action: str, reason: str = "", fallback: str = ""
) -> list[dict[str, str]]:
    """One entry per target (e.g. a sysctl key) under the control that owns it in ``owners``
    ({control: {target: value}}), so the summary blames the right control."""
    owner_of = {str(t): str(c) for c, values in (owners or {}).items() for t in (values or {})}
    return [
        {"control": owner_of.get(str(t), fallback), "action": action, "reason": reason, "target": str(t)}
        for t in targets
    ]


def wrong_files(specs: Any, audit: Any, waived: Any = ()) -> list[dict[str, Any]]:
    """One item per file the host audit found wrong, for each spec (a control id plus the fix).

    ``audit`` is the ``controls`` result of the host_audit module, keyed by the spec's ``id``; the
    waiver applies to the spec's ``control`` (default: its id).
    """
    fixes = []
    for spec in specs:
        if spec.get("control", spec["id"]) in (waived or ()):
            continue
        details = (audit.get(spec["id"]) or {}).get("details") or {}
        fixes += [{**spec, "path": path} for path in details.get("wrong", [])]
    return fixes


def only_controls(run_tags: Any, selecting_tags: Any) -> list[str] | None:
    """The control ids a restricted run (--tags) asks for, or None when the run selects everything.

    A run selects everything when its tags include "all" or any tag in ``selecting_tags`` (the
    role's own tag and its area tags).
    """
    tags = set(run_tags or ["all"])
    if "all" in tags or tags & set(selecting_tags or ()):
        return None
    return sorted(tags)


def active_controls(controls: Any, off: Any, only: Any = None) -> list[str]:
    """The controls a run applies: not waived or skipped (``off``), and selected when ``only`` is set."""
    off_set = set(off or ())
    return [c for c in controls if c not in off_set and (only is None or c in only)]


def select_entries(entries: Any, off: Any, only: Any, enabled_areas: Any) -> list[dict[str, Any]]:
    """Managed-file entries to apply: area enabled and at least one of the entry's controls active."""
    enabled = enabled_areas or {}
    return [e for e in entries if enabled.get(e["area"], True) and active_controls(e["controls"], off, only)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "preaudit_waived_controls": waived_controls,
            "preaudit_summary": summary_entries,
            "preaudit_summary_by_owner": summary_by_owner,
            "preaudit_wrong_files": wrong_files,
            "preaudit_only": only_controls,
            "preaudit_active": active_controls,
            "preaudit_select": select_entries,
        }

"""Jinja filters shared by the preaudit roles and playbooks (controller side)."""

from __future__ import annotations

import re
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


CONTROL_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Z][A-Z0-9]*)*-[0-9]{3}$")
REASON_LENGTH = 400


def _reason(text: Any) -> str:
    """A failure message on one line, short enough for a summary line. A validation command often
    says what it refused last (dockerd, nft), so a long message keeps its start and its end."""
    words = " ".join(line.strip() for line in str(text or "").splitlines() if line.strip())
    if not words:
        return "failed without a message"
    if len(words) <= REASON_LENGTH:
        return words
    head = REASON_LENGTH // 3
    return words[:head] + " ... " + words[-(REASON_LENGTH - head - 5) :]


def failed_task_controls(task: Any) -> list[str]:
    """The controls a failed task serves: the id its name starts with, then its control tags."""
    name = str((task or {}).get("name") or "") if isinstance(task, dict) else str(getattr(task, "name", "") or "")
    tags = (task or {}).get("tags") if isinstance(task, dict) else getattr(task, "tags", None)
    first = name.split(" | ", 1)[0].strip()
    ids = [first] if CONTROL_ID.match(first) else []
    return ids + [str(t) for t in tags or () if CONTROL_ID.match(str(t)) and str(t) not in ids]


def failure_entries(task: Any, result: Any, check_mode: bool = False, area: str = "") -> list[dict[str, str]]:
    """Summary entries for a task that failed inside a role's area: its controls failed, with why.

    In check mode nothing was tried for real, so the controls are ``not_checked`` instead.
    """
    res = result if isinstance(result, dict) else {}
    message = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
    name = str((task or {}).get("name") if isinstance(task, dict) else getattr(task, "name", "")) or "a task"
    controls = failed_task_controls(task) or [name.split(" | ", 1)[0].strip() or "unknown"]
    action = "not_checked" if check_mode else "failed"
    rest = f" (the rest of the {area} area was not attempted)" if area else ""
    return summary_entries(controls, action, f"{name}: {_reason(message)}{rest}")


def failed_file_entries(result: Any, check_mode: bool = False) -> list[dict[str, str]]:
    """Summary entries for the files ``managed_files`` (isolate) left as they were."""
    action = "not_checked" if check_mode else "failed"
    entries = []
    for failed in (result or {}).get("failed_entries") or ():
        for control in failed.get("controls") or ["unknown"]:
            entries.append(
                {"control": str(control), "action": action, "reason": _reason(failed.get("reason")),
                 "target": str(failed.get("path"))}
            )  # fmt: skip
    return entries


def failed_package_entries(
    results: Any, owners: Any, check_mode: bool = False, fallback: str = "unknown", dependents: Any = None
) -> list[dict[str, str]]:
    """Summary entries for the packages an ``apt`` loop (one package an item) could not install.

    ``owners`` maps a package to the control (or controls) that installs it; a package no control
    owns is recorded under ``fallback`` (for example the variable that asked for it). The controls
    that configure what such a control installs (``dependents``: {control: [controls]}) cannot be
    applied either and are recorded with it.
    """
    action = "not_checked" if check_mode else "failed"
    entries = []
    for item in (results or {}).get("results") or ():
        if not item.get("failed"):
            continue
        package = str(item.get("item"))
        controls = (owners or {}).get(package) or [fallback]
        for control in [controls] if isinstance(controls, str) else controls:
            reason = (
                f"package {package} cannot be installed from the host's package sources: {_reason(item.get('msg'))}"
            )
            entries.append({"control": str(control), "action": action, "reason": reason, "target": package})
            for dependent in (dependents or {}).get(control) or ():
                needs = (
                    f"needs package {package} ({control}), which cannot be installed from the host's package sources"
                )
                entries.append({"control": str(dependent), "action": action, "reason": needs, "target": package})
    return entries


def failed_controls(entries: Any) -> list[str]:
    """The controls that summary entries record as failed, each once."""
    return sorted({str(e["control"]) for e in entries or () if e.get("action") == "failed"})


def failure_message(entries: Any) -> str:
    """One message for a host whose run ends as failed because controls could not be applied."""
    failed = [e for e in entries or () if e.get("action") == "failed"]
    controls = failed_controls(failed)
    details = "; ".join(
        f"{e['control']}{' [' + str(e['target']) + ']' if e.get('target') else ''}: {e.get('reason', '')}"
        for e in failed
    )
    return (
        f"{len(controls)} control(s) could not be applied on this host ({', '.join(controls)}); every other "
        f"selected control was applied. {details}. Fix the cause and run again."
    )


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
            "preaudit_failure": failure_entries,
            "preaudit_failed_files": failed_file_entries,
            "preaudit_failed_packages": failed_package_entries,
            "preaudit_failed_controls": failed_controls,
            "preaudit_failure_message": failure_message,
        }

"""Apply the hardening playbooks to a fleet, follow the run host by host, and summarise it.

The run goes through ansible-runner's Python API. Every event it reports passes through an
:class:`EventCollector`, which keeps what a live display needs (per host: current task and
counters) and what the summary needs:

- per host, ok / changed / failed / skipped / unreachable from the runner's final stats;
- per control and host, what happened to it, derived from the events only, first match wins:
  * a task named after the control (``"SSH-004 | ..."``) failed, or a ``failed`` entry in a
    role's ``<role>_summary`` fact (the role recorded it and applied the other controls): ``failed``;
  * the control is waived for the host (the ``preaudit_waived`` fact, or a ``waived`` entry in a
    role's ``<role>_summary`` fact): ``waived``;
  * a ``not_applied`` entry without a target in a ``<role>_summary`` fact: ``not_applicable``
    (with a target, a setting or a file, the rest of the control stays applied and the host is
    listed under ``partly_not_applied``);
  * ``rolled_back`` entries: ``rolled_back``; ``reported`` entries of a control the run does not
    apply: ``reported_only``;
  * the role's ``_<role>_active`` fact (the controls the run applies) leaves it out:
    ``not_selected`` (``--tags``/``--skip``);
  * the host failed or was unreachable and nothing confirmed the control (a task of it that
    did something, or a ``managed_files`` entry for it): ``not_reached``;
  * otherwise ``applied``, and ``changed`` when a task of it, or a file that ``managed_files``
    wrote for it, changed. Roles without an ``_<role>_active`` fact are judged by their tasks.
  Assertions and recorded decisions (``assert``, ``set_fact``...) are no evidence of a change.
  Facts are read from the ``set_fact`` events that set them, so a host that fails half-way still
  reports what it had decided.

The result is ``RUN_DIR/summary.json`` (written atomically), next to ansible-runner's own
artifacts (``RUN_DIR/ansible/stdout``, ``RUN_DIR/ansible/job_events/``).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from scanners.ansible_run import run_playbook
from scanners.catalog import ID_PATTERN, Catalog, default_catalog
from scanners.errors import EXIT_FINDINGS, EXIT_OK, EXIT_RUNTIME, InputError
from scanners.fsutil import write_text_atomic
from scanners.inventory import resolve_hosts
from scanners.project import project_root
from scanners.waivers import load_waivers

SUMMARY_SCHEMA = "preaudit-harden-summary/1"
EXIT_INTERRUPTED = 130
CONTROL_TASK = re.compile(r"^([A-Z][A-Z0-9]*(?:-[A-Z][A-Z0-9]*)*-[0-9]{3})\s*\|")
ROLE_IN_PATH = re.compile(r"/roles/([^/]+)/tasks/")
ACTIVE_FACT = re.compile(r"^_(\w+)_active$")
SUMMARY_FACT = re.compile(r"^(\w+)_summary$")
SERIAL = re.compile(r"^([0-9]+)(%?)$")
TAG = re.compile(r"^[A-Za-z0-9_./-]+$")
ANSIBLE_DIR = "ansible"
# Actions that decide or report rather than change the host.
DECISION_ACTIONS = frozenset({"assert", "fail", "debug", "set_fact", "set_stats", "meta", "validate_argument_spec"})

# Host states, worst first: the summary and the exit code look at the worst.
HOST_STATES = ("failed", "unreachable", "not_run", "changed", "ok")
# Per-control outcomes on one host, in the order they are shown.
CONTROL_STATES = (
    "applied",
    "waived",
    "not_applicable",
    "reported_only",
    "failed",
    "rolled_back",
    "not_selected",
    "not_reached",
    "skipped",
)


# -- input validation ---------------------------------------------------------------------------


def parse_serial(text: str) -> int | str:
    """``--serial``: a batch size (N >= 1) or a share of the hosts (1%..100%)."""
    match = SERIAL.match(text.strip())
    if not match:
        raise InputError(f"--serial {text!r}: expected a number of hosts (e.g. 2) or a percentage (e.g. 25%)")
    number, percent = int(match.group(1)), match.group(2)
    if percent:
        if not 1 <= number <= 100:
            raise InputError(f"--serial {text}: a percentage must be between 1% and 100%")
        return f"{number}%"
    if number < 1:
        raise InputError(f"--serial {text}: the batch size must be at least 1")
    return number


def parse_percent(text: str) -> int:
    """``--max-fail-percent``: 0..100 (Ansible stops the play when a batch's failures exceed it)."""
    value = text.strip().removesuffix("%")
    if not value.isdigit() or not 0 <= int(value) <= 100:
        raise InputError(f"--max-fail-percent {text!r}: expected a whole number from 0 to 100")
    return int(value)


def parse_tags(text: str, option: str, catalog: Catalog | None = None) -> tuple[str, ...]:
    """Comma-separated control ids (or role/area tags); an id the catalog lacks is refused."""
    catalog = catalog or default_catalog()
    items = tuple(t.strip() for t in text.split(","))
    if not items or any(not t for t in items):
        raise InputError(f"{option} {text!r}: expected comma-separated control ids, e.g. SSH-004,OS-KRN-001")
    for item in items:
        if not TAG.match(item):
            raise InputError(f"{option}: {item!r} is not a control id or tag")
        if ID_PATTERN.match(item) and item not in catalog:
            raise InputError(f"{option}: unknown control id {item!r} (see `preaudit catalog list`)")
    return items


def parse_extra_vars(items: Sequence[str]) -> dict[str, Any]:
    """``-e KEY=VALUE`` (VALUE read as YAML) or ``-e @FILE`` (a YAML or JSON mapping)."""
    merged: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:])
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise InputError(f"-e {item}: cannot read: {exc.strerror or exc}") from None
            except yaml.YAMLError:
                raise InputError(f"-e {item}: invalid YAML") from None
            if not isinstance(data, dict):
                raise InputError(f"-e {item}: expected a mapping of variables")
            merged.update(data)
            continue
        key, sep, value = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InputError(f"-e {item!r}: expected KEY=VALUE or @FILE")
        try:
            merged[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise InputError(f"-e {item!r}: the value is not valid YAML") from None
    return merged


# -- options and run directory --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HardenOptions:
    inventory: Path
    playbook: str = "site.yml"
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    serial: int | str | None = None
    max_fail_percentage: int | None = None
    waivers_file: Path | None = None
    forks: int | None = None
    extra_vars: Mapping[str, Any] = field(default_factory=dict)

    def extravars(self) -> dict[str, Any]:
        extra = dict(self.extra_vars)
        if self.serial is not None:
            extra["preaudit_serial"] = self.serial
        if self.max_fail_percentage is not None:
            extra["preaudit_max_fail_percentage"] = self.max_fail_percentage
        if self.waivers_file is not None:
            extra["preaudit_waivers_file"] = str(self.waivers_file.resolve())
        return extra

    def describe(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "inventory": str(self.inventory),
            "limit": self.limit,
            "tags": list(self.tags),
            "skip_tags": list(self.skip_tags),
            "check": self.check,
            "diff": self.diff,
            "serial": self.serial,
            "max_fail_percentage": self.max_fail_percentage,
            "waivers_file": str(self.waivers_file) if self.waivers_file else None,
            "forks": self.forks,
            "extra_vars": sorted(self.extra_vars),
        }


def validate_options(options: HardenOptions) -> list[str]:
    """Check everything before anything runs; returns the targeted hosts."""
    root = project_root()
    if not (root / "playbooks" / options.playbook).is_file():
        raise InputError(f"no playbook {options.playbook} in {root / 'playbooks'}")
    if options.waivers_file is not None:
        load_waivers(options.waivers_file, default_catalog())
    if options.forks is not None and options.forks < 1:
        raise InputError(f"--forks {options.forks}: must be at least 1")
    return resolve_hosts(options.inventory, options.limit)


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the run directory; never reuse one that holds an earlier run's evidence."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--run-dir {run_dir} exists and is not a directory")
    if (run_dir / "summary.json").exists() or (run_dir / ANSIBLE_DIR).exists():
        raise InputError(f"--run-dir {run_dir} already holds a run; give a new directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--run-dir {run_dir}: cannot create: {exc.strerror or exc}") from None
    return run_dir


# -- following the run ---------------------------------------------------------------------------


@dataclass(slots=True)
class HostProgress:
    """What the live display shows for one host; counters are per task, as in Ansible's recap."""

    name: str
    state: str = "waiting"
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0
    failed_task: str = ""
    message: str = ""


@dataclass(slots=True)
class TaskTiming:
    name: str
    hosts: int = 0
    total: float = 0.0
    longest: float = 0.0


def _one_line(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            return _one_line(value)
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("failed"):
                return _failure_message(item)
    return "failed"


class EventCollector:
    """Consumes ansible-runner events (as its ``event_handler``) and keeps what the summary needs.

    ``on_change`` is called after every event that changed a host's progress; it runs in the
    thread that runs ansible-runner. Reads from other threads take :attr:`lock`.
    """

    def __init__(self, hosts: Iterable[str], on_change: Callable[[EventCollector], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[str, HostProgress] = {h: HostProgress(h) for h in hosts}
        self.on_change = on_change
        self.facts: dict[str, dict[str, Any]] = defaultdict(dict)
        self.control_tasks: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.changed_controls: dict[str, set[str]] = defaultdict(set)
        self.managed_controls: dict[str, set[str]] = defaultdict(set)
        self.roles: dict[str, None] = {}
        self.timings: dict[str, TaskTiming] = {}
        self.stats: dict[str, dict[str, int]] | None = None
        self.warnings: list[str] = []
        self.events = 0

    # ansible-runner calls this for every event; returning True keeps the event in job_events/.
    def __call__(self, event: dict[str, Any]) -> bool:
        self.handle(event)
        return True

    def handle(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("event", ""))
        data: Mapping[str, Any] = event.get("event_data") or {}
        changed = False
        with self.lock:
            self.events += 1
            path = str(data.get("task_path") or "")
            role = ROLE_IN_PATH.search(path)
            if role:
                self.roles.setdefault(role.group(1), None)
            host = data.get("host")
            if kind == "playbook_on_stats":
                self._stats(data)
                changed = True
            elif kind == "warning":
                self.warnings.append(_one_line(event.get("stdout") or data.get("warning") or ""))
            elif host is not None and kind.startswith("runner_on_"):
                changed = self._host_event(kind, str(host), data)
        if changed and self.on_change is not None:
            self.on_change(self)

    def _progress(self, host: str) -> HostProgress:
        if host not in self.hosts:
            self.hosts[host] = HostProgress(host)
        return self.hosts[host]

    def _host_event(self, kind: str, host: str, data: Mapping[str, Any]) -> bool:
        progress = self._progress(host)
        task = str(data.get("task") or "")
        res: Mapping[str, Any] = data.get("res") or {}
        control_match = CONTROL_TASK.match(task)
        control = control_match.group(1) if control_match else None
        if kind == "runner_on_start":
            progress.task = task
            if progress.state == "waiting":
                progress.state = "running"
            return True
        if kind not in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
            return False  # per-item events, async polls: the task's own event follows
        self._time(task, data)
        if kind == "runner_on_ok":
            progress.ok += 1
            if res.get("changed"):
                progress.changed += 1
            self._facts(host, res)
            status = "changed" if res.get("changed") else "ok"
            if data.get("task_action") in ("managed_files", "preaudit.managed_files"):
                self._managed(host, res)
        elif kind == "runner_on_skipped":
            progress.skipped += 1
            status = "skipped"
        elif kind == "runner_on_failed" and data.get("ignore_errors"):
            progress.ok += 1
            status = "ok"
        else:
            status = "failed" if kind == "runner_on_failed" else "unreachable"
            if status == "failed":
                progress.failed += 1
            else:
                progress.unreachable += 1
            progress.state = status
            progress.failed_task = task
            progress.message = _failure_message(res)
        if control:
            action = str(data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
            if status in ("ok", "changed") and action in DECISION_ACTIONS:
                status = "checked"  # an assertion or a recorded decision is no evidence of a change made
            self.control_tasks[host][control].add(status)
            if status == "changed":
                self.changed_controls[host].add(control)
        return True

    def _facts(self, host: str, res: Mapping[str, Any]) -> None:
        facts = res.get("ansible_facts")
        if not isinstance(facts, Mapping):
            return
        for key, value in facts.items():
            if key == "preaudit_waived" or ACTIVE_FACT.match(key) or SUMMARY_FACT.match(key):
                self.facts[host][key] = value

    def _managed(self, host: str, res: Mapping[str, Any]) -> None:
        """Controls whose managed files or lines were ensured, and changed (entries carry ``controls``)."""
        changed_paths = set(res.get("changed_paths") or ())
        args = (res.get("invocation") or {}).get("module_args") or {}
        for key in ("files", "lines"):
            for entry in args.get(key) or ():
                if not isinstance(entry, Mapping):
                    continue
                controls = {str(c) for c in entry.get("controls") or ()}
                self.managed_controls[host] |= controls
                if entry.get("path") in changed_paths:
                    self.changed_controls[host] |= controls

    def _time(self, task: str, data: Mapping[str, Any]) -> None:
        duration = data.get("duration")
        if not isinstance(duration, int | float):
            return
        timing = self.timings.setdefault(task, TaskTiming(task))
        timing.hosts += 1
        timing.total += float(duration)
        timing.longest = max(timing.longest, float(duration))

    def _stats(self, data: Mapping[str, Any]) -> None:
        keys = ("ok", "changed", "failures", "skipped", "dark", "rescued", "ignored", "processed")
        self.stats = {k: {str(h): int(n) for h, n in (data.get(k) or {}).items()} for k in keys}
        for progress in self.hosts.values():
            if progress.name in self.stats["dark"]:
                progress.state = "unreachable"
            elif progress.name in self.stats["failures"]:
                progress.state = "failed"
            elif progress.name not in self.stats["processed"]:
                progress.state = "not_run"
            else:
                progress.state = "changed" if self.stats["changed"].get(progress.name) else "ok"
            progress.task = ""

    def snapshot(self) -> list[HostProgress]:
        with self.lock:
            return [HostProgress(**{f: getattr(p, f) for f in HostProgress.__slots__}) for p in self.hosts.values()]


# -- the summary --------------------------------------------------------------------------------


def host_results(collector: EventCollector) -> dict[str, dict[str, Any]]:
    """Per host: the runner's final counters (events before the stats, if there were none) and state."""
    stats = collector.stats
    results: dict[str, dict[str, Any]] = {}
    for name, progress in collector.hosts.items():
        if stats is not None:
            counts = {
                "ok": stats["ok"].get(name, 0),
                "changed": stats["changed"].get(name, 0),
                "failed": stats["failures"].get(name, 0),
                "skipped": stats["skipped"].get(name, 0),
                "unreachable": stats["dark"].get(name, 0),
                "rescued": stats["rescued"].get(name, 0),
                "ignored": stats["ignored"].get(name, 0),
            }
        else:
            counts = {
                "ok": progress.ok,
                "changed": progress.changed,
                "failed": progress.failed,
                "skipped": progress.skipped,
                "unreachable": progress.unreachable,
                "rescued": 0,
                "ignored": 0,
            }
        if counts["unreachable"]:
            state = "unreachable"
        elif counts["failed"]:
            state = "failed"
        elif stats is not None and name not in stats["processed"]:
            state = "not_run"
        elif stats is None and progress.state in ("waiting", "running"):
            state = "not_run" if progress.state == "waiting" else "failed"
        else:
            state = "changed" if counts["changed"] else "ok"
        entry: dict[str, Any] = {"status": state, **counts}
        if progress.failed_task:
            entry["failed_task"] = progress.failed_task
            entry["message"] = progress.message
        elif state == "not_run":
            entry["message"] = "never started: the play stopped before this host's batch (max_fail_percentage)"
        results[name] = entry
    return results


def _role_entries(facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for key, value in facts.items():
        if SUMMARY_FACT.match(key) and isinstance(value, list):
            entries += [dict(e) for e in value if isinstance(e, Mapping) and "control" in e and "action" in e]
    return entries


def control_outcomes(
    collector: EventCollector, hosts: Mapping[str, Mapping[str, Any]], catalog: Catalog
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, set[str]]], list[dict[str, Any]]]:
    """(status per control per host, {"changed"|"partly_not_applied": hosts per applied control}, host notes)."""
    roles = list(collector.roles)
    role_controls = {c.id: c.role for c in catalog if c.role in roles}
    seen = set(role_controls)
    for per_host in collector.control_tasks.values():
        seen |= set(per_host)
    for host_facts in collector.facts.values():
        seen |= {str(e["control"]) for e in _role_entries(host_facts) if ID_PATTERN.match(str(e["control"]))}
    outcome: dict[str, dict[str, str]] = {c: {} for c in sorted(seen)}
    changed: dict[str, set[str]] = defaultdict(set)
    partly: dict[str, set[str]] = defaultdict(set)
    notes: list[dict[str, Any]] = []
    for host, result in hosts.items():
        if result["status"] == "not_run":
            continue
        facts = collector.facts.get(host, {})
        entries = _role_entries(facts)
        waived = {str(c) for c in facts.get("preaudit_waived") or ()}
        waived |= {e["control"] for e in entries if e["action"] == "waived"}
        by_action: dict[str, set[str]] = defaultdict(set)
        for entry in entries:
            # An entry naming a target (a setting, a file) leaves the rest of the control applied.
            action = str(entry["action"])
            if action == "not_applied" and entry.get("target"):
                action = "partly_not_applied"
            by_action[action].add(str(entry["control"]))
            if entry["action"] != "waived" or entry["control"] not in catalog:
                notes.append({"host": host, **{k: entry.get(k) for k in ("control", "action", "reason", "target")}})
        active: dict[str, set[str]] = {}
        for key, value in facts.items():
            match = ACTIVE_FACT.match(key)
            if match and isinstance(value, list):
                active[match.group(1)] = {str(c) for c in value}
        tasks = collector.control_tasks.get(host, {})
        host_failed = result["status"] in ("failed", "unreachable")
        managed = collector.managed_controls.get(host, set())
        for control in outcome:
            statuses = tasks.get(control, set())
            role = role_controls.get(control)
            if statuses & {"failed", "unreachable"} or control in by_action["failed"]:
                # A role records a control it could not apply (and goes on with the others).
                state = "failed"
            elif control in waived:
                state = "waived"
            elif control in by_action["not_applied"]:
                state = "not_applicable"
            elif control in by_action["rolled_back"]:
                state = "rolled_back"
            elif control in by_action["reported"] and not (role in active and control in active[role]):
                state = "reported_only"  # nothing automated: a person must review what the role found
            elif role in active and control not in active[role]:
                state = "not_selected"
            elif host_failed and not (statuses & {"ok", "changed"} or control in managed):
                # The host stopped before anything confirmed this control.
                state = "not_reached"
            elif role in active:
                # The role named the controls it applies; a task named after one control often
                # serves several (one sysctl file), so its name alone does not select a control.
                state = "applied"
            elif statuses & {"ok", "changed"}:
                state = "applied"
            elif host_failed:
                state = "not_reached"
            elif statuses:
                state = "skipped"
            else:
                state = "not_selected"
            outcome[control][host] = state
            if state == "applied" and control in collector.changed_controls.get(host, set()):
                changed[control].add(host)
            if state == "applied" and control in by_action["partly_not_applied"]:
                partly[control].add(host)
    return outcome, {"changed": changed, "partly_not_applied": partly}, notes


@dataclass(slots=True)
class HardenRun:
    """Everything known about one run; ``summary`` is what ``summary.json`` holds."""

    run_dir: Path
    exit_code: int
    summary: dict[str, Any]
    collector: EventCollector


def build_summary(
    collector: EventCollector,
    options: HardenOptions,
    *,
    run_id: str,
    run_dir: Path,
    started: datetime,
    finished: datetime,
    rc: int | None,
    status: str,
    catalog: Catalog | None = None,
) -> tuple[dict[str, Any], int]:
    catalog = catalog or default_catalog()
    hosts = host_results(collector)
    outcome, flags, notes = control_outcomes(collector, hosts, catalog)
    controls: dict[str, Any] = {}
    for control, per_host in outcome.items():
        info = catalog.controls.get(control)
        entry: dict[str, Any] = {
            "title": info.title if info else "",
            "role": info.role if info else None,
        }
        for state in CONTROL_STATES:
            entry[state] = sorted(h for h, s in per_host.items() if s == state)
        for flag, flagged in flags.items():
            entry[flag] = sorted(flagged.get(control, ()))
        entry["reported"] = sorted({n["host"] for n in notes if n["control"] == control and n["action"] == "reported"})
        controls[control] = entry
    totals = {state: sum(1 for h in hosts.values() if h["status"] == state) for state in HOST_STATES}
    bad = totals["failed"] + totals["unreachable"] + totals["not_run"]
    if status == "canceled":
        exit_code, result = EXIT_INTERRUPTED, "interrupted"
    elif collector.stats is None:  # ansible-playbook stopped before its recap: not a host's fault
        exit_code, result = EXIT_RUNTIME, "error"
    elif bad:
        exit_code, result = EXIT_FINDINGS, "failed"
    elif rc != 0:
        exit_code, result = EXIT_RUNTIME, "error"
    else:
        exit_code, result = EXIT_OK, "ok"
    slowest = sorted(collector.timings.values(), key=lambda t: t.longest, reverse=True)[:15]
    summary = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "duration_seconds": round((finished - started).total_seconds(), 2),
        "options": options.describe(),
        "result": result,
        "exit_code": exit_code,
        "ansible": {"rc": rc, "status": status, "artifacts": ANSIBLE_DIR, "events": collector.events},
        "totals": {"hosts": len(hosts), **totals},
        "hosts": hosts,
        "roles": list(collector.roles),
        "controls": controls,
        "notes": notes,
        "warnings": collector.warnings,
        "slowest_tasks": [
            {
                "task": t.name,
                "hosts": t.hosts,
                "longest_seconds": round(t.longest, 3),
                "total_seconds": round(t.total, 3),
            }
            for t in slowest
        ],
    }
    return summary, exit_code


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> Path:
    path = run_dir / "summary.json"
    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def runtime_problem(run_dir: Path) -> str:
    """One line saying why ansible-playbook stopped without a result (syntax error, missing role...)."""
    stdout = run_dir / ANSIBLE_DIR / "stdout"
    text = stdout.read_text(errors="replace") if stdout.exists() else ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("ERROR!", "[ERROR]:")):
            return _one_line(stripped.split("!", 1)[1] if stripped.startswith("ERROR!") else stripped[8:])
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return _one_line(tail[-1]) if tail else "ansible-playbook produced no output"


def run_harden(
    options: HardenOptions,
    run_dir: Path,
    *,
    hosts: Sequence[str] | None = None,
    on_change: Callable[[EventCollector], None] | None = None,
    on_start: Callable[[EventCollector], None] | None = None,
    cancel_callback: Callable[[], bool] | None = None,
) -> HardenRun:
    """Run the playbook and write ``run_dir/summary.json``; the summary is written even on Ctrl-C.

    ``hosts`` are the targeted hosts (from :func:`validate_options`); the caller validates first.
    """
    targeted = list(hosts) if hosts is not None else validate_options(options)
    prepare_run_dir(run_dir)
    run_id = run_dir.name
    collector = EventCollector(targeted, on_change)
    if on_start is not None:
        on_start(collector)
    started = datetime.now(UTC)
    rc: int | None = None
    status = "error"
    try:
        result = run_playbook(
            options.playbook,
            options.inventory,
            run_dir,
            limit=options.limit,
            tags=",".join(options.tags) or None,
            skip_tags=",".join(options.skip_tags) or None,
            check=options.check,
            diff=options.diff,
            extravars=options.extravars(),
            forks=options.forks,
            event_handler=collector,
            artifact_dir=run_dir,
            ident=ANSIBLE_DIR,
            cancel_callback=cancel_callback,
        )
        rc, status = result.rc, result.status
    except KeyboardInterrupt:
        status = "canceled"
        raise
    finally:
        summary, exit_code = build_summary(
            collector,
            options,
            run_id=run_id,
            run_dir=run_dir,
            started=started,
            finished=datetime.now(UTC),
            rc=rc,
            status=status,
        )
        write_summary(run_dir, summary)
    return HardenRun(run_dir, exit_code, summary, collector)


def default_run_dir(base: Path | None = None) -> Path:
    return (base or Path("runs")) / new_run_id()


def load_events(run_dir: Path) -> list[dict[str, Any]]:
    """The events ansible-runner kept for a run (``RUN_DIR/ansible/job_events/``), in order."""
    events = []
    for path in (run_dir / ANSIBLE_DIR / "job_events").glob("*.json"):
        try:
            events.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(events, key=lambda e: int(e.get("counter", 0)))

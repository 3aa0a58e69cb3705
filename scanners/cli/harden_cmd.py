"""`preaudit harden`: apply the hardening playbooks with live per-host progress and a summary.

Exit codes: 0 every targeted host converged (ok or changed); 1 a host failed, was unreachable,
or was never reached because the play stopped (``--max-fail-percent``); 2 bad input (nothing
ran); 3 ansible-playbook could not run the play (syntax error, missing role...); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from scanners.errors import EXIT_RUNTIME, PreauditError
from scanners.harden import (
    HOST_STATES,
    EventCollector,
    HardenOptions,
    HostProgress,
    default_run_dir,
    parse_extra_vars,
    parse_percent,
    parse_serial,
    parse_tags,
    run_harden,
    runtime_problem,
    validate_options,
)

DEFAULT_INVENTORY = "inventories/lab/hosts.yml"
STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "not_run": "magenta",
    "running": "cyan",
    "waiting": "dim",
}
LIVE_ROWS = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "harden",
        help="apply the hardening roles to a fleet with live progress and a per-host, per-control summary",
        description=(
            "Run playbooks/site.yml (or --playbook) through ansible-runner, show each host's progress, then a summary "
            "per host and per control. The run's events, ansible output and summary.json are kept in a run directory. "
            "Exit 0 when every host converged, 1 when a host failed, was unreachable or was never reached, "
            "2 for bad input, 3 when the play could not run, 130 when interrupted."
        ),
    )
    parser.add_argument(
        "--inventory",
        "-i",
        type=Path,
        default=Path(os.environ.get("PREAUDIT_LAB_INVENTORY", DEFAULT_INVENTORY)),
        help=f"Ansible inventory (default {DEFAULT_INVENTORY}, the lab's)",
    )
    parser.add_argument("--playbook", default="site.yml", help="playbook in playbooks/ (default site.yml)")
    parser.add_argument("--limit", "-l", metavar="HOSTS", help="Ansible host pattern, e.g. 'web-*,!web-3'")
    parser.add_argument("--tags", "-t", metavar="IDS", help="apply only these controls (comma-separated ids or tags)")
    parser.add_argument("--skip", metavar="IDS", help="leave these controls alone (comma-separated ids or tags)")
    parser.add_argument("--check", action="store_true", help="report what would change, change nothing")
    parser.add_argument("--diff", action="store_true", help="record the differences of changed files")
    parser.add_argument("--serial", metavar="N|PCT", help="roll out in batches of N hosts or PCT%% of the hosts")
    parser.add_argument(
        "--max-fail-percent",
        metavar="PCT",
        help="stop the rollout when more than PCT%% of a batch fails (0: at the first failure)",
    )
    parser.add_argument("--waivers", type=Path, metavar="FILE", help="waiver file: waived controls are left alone")
    parser.add_argument("--forks", type=int, help="parallel hosts (default: ansible.cfg, 25)")
    parser.add_argument(
        "--extra-vars",
        "-e",
        action="append",
        default=[],
        metavar="KEY=VALUE|@FILE",
        help="extra variables for the play (repeatable)",
    )
    parser.add_argument("--run-dir", type=Path, help="where to keep the run (default runs/<UTC time>-<id>/)")
    parser.add_argument("--no-progress", action="store_true", help="no live display (one line per host problem)")
    parser.add_argument("--json", action="store_true", help="print summary.json instead of the tables")
    parser.set_defaults(func=_harden)


def options_from_args(args: argparse.Namespace) -> HardenOptions:
    return HardenOptions(
        inventory=args.inventory,
        playbook=args.playbook,
        limit=args.limit,
        tags=parse_tags(args.tags, "--tags") if args.tags is not None else (),
        skip_tags=parse_tags(args.skip, "--skip") if args.skip is not None else (),
        check=args.check,
        diff=args.diff,
        serial=parse_serial(args.serial) if args.serial is not None else None,
        max_fail_percentage=parse_percent(args.max_fail_percent) if args.max_fail_percent is not None else None,
        waivers_file=args.waivers,
        forks=args.forks,
        extra_vars=parse_extra_vars(args.extra_vars),
    )


def _harden(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    hosts = validate_options(options)
    run_dir = args.run_dir or default_run_dir()
    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=160)  # a log or a pipe: no terminal to fit, keep the titles readable
    mode = " (check mode: nothing is changed)" if options.check else ""
    err.print(f"harden: {options.playbook} on {len(hosts)} host(s){mode}; run directory {run_dir}")
    live = not args.no_progress and err.is_terminal
    if live:
        view = ProgressView()
        with Live(view, console=err, refresh_per_second=4, transient=False):
            run = run_harden(options, run_dir, hosts=hosts, on_start=view.attach)
    else:
        run = run_harden(options, run_dir, hosts=hosts, on_change=_line_reporter(err))
    summary = run.summary
    if args.json:
        out.print_json(json.dumps(summary))
    elif summary["result"] != "error":
        print_summary(out, summary)
    err.print(f"run directory: {run_dir} (summary.json, ansible/stdout, ansible/job_events/)")
    if run.exit_code == EXIT_RUNTIME:
        raise PreauditError(f"ansible-playbook could not run the play: {runtime_problem(run_dir)}")
    return run.exit_code


# -- live progress ------------------------------------------------------------------------------


class ProgressView:
    """A rich renderable of the run's hosts, rebuilt from the collector at every refresh."""

    def __init__(self) -> None:
        self.collector: EventCollector | None = None

    def attach(self, collector: EventCollector) -> None:
        self.collector = collector

    def __rich__(self) -> RenderableType:
        if self.collector is None:
            return Text("starting ansible-playbook...", style="dim")
        hosts = self.collector.snapshot()
        counts: dict[str, int] = defaultdict(int)
        for host in hosts:
            counts[host.state] += 1
        head = Text(
            "  ".join(f"{state}: {n}" for state, n in sorted(counts.items())) + f"  (events: {self.collector.events})"
        )
        shown = hosts
        if len(hosts) > LIVE_ROWS:
            # A big fleet: the hosts at work or in trouble, not a screen of finished ones.
            shown = [h for h in hosts if h.state in ("running", "failed", "unreachable")][:LIVE_ROWS]
        return Group(head, _progress_table(shown))


def _progress_table(hosts: list[HostProgress]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("host", "state", "ok", "changed", "failed", "skipped", "unreach.", "task"):
        table.add_column(
            column, justify="right" if column in ("ok", "changed", "failed", "skipped", "unreach.") else "left"
        )
    for host in hosts:
        task = host.message if host.state in ("failed", "unreachable") else host.task
        table.add_row(
            host.name,
            Text(host.state, style=STYLE.get(host.state, "")),
            str(host.ok),
            str(host.changed),
            str(host.failed),
            str(host.skipped),
            str(host.unreachable),
            Text(task[:90], overflow="ellipsis", no_wrap=True),
        )
    return table


def _line_reporter(console: Console) -> Callable[[EventCollector], None]:
    """Without a terminal: one line when a host fails or becomes unreachable (CI logs stay short)."""
    reported: set[str] = set()

    def report(collector: EventCollector) -> None:
        for host in collector.hosts.values():
            if host.state in ("failed", "unreachable") and host.name not in reported:
                reported.add(host.name)
                console.print(
                    f"harden: {host.name} {host.state} at {host.failed_task!r}: {host.message}", soft_wrap=True
                )

    return report


# -- summary tables -----------------------------------------------------------------------------


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    check = summary["options"]["check"]
    hosts = Table(title="hosts" + (" (check mode)" if check else ""))
    for column in ("host", "result", "ok", "changed", "failed", "skipped", "unreachable", "detail"):
        hosts.add_column(column, justify="right" if column not in ("host", "result", "detail") else "left")
    for name, host in summary["hosts"].items():
        detail = ""
        if host.get("failed_task"):
            detail = f"{host['failed_task']}: {host.get('message', '')}"
        elif host.get("message"):
            detail = host["message"]
        hosts.add_row(
            name,
            Text(host["status"], style=STYLE.get(host["status"], "")),
            *(str(host[k]) for k in ("ok", "changed", "failed", "skipped", "unreachable")),
            detail,
        )
    console.print(hosts)
    _print_controls(console, summary)
    _print_notes(console, summary)
    totals = summary["totals"]
    line = ", ".join(f"{totals[s]} {s.replace('_', ' ')}" for s in HOST_STATES if totals[s])
    console.print(f"{totals['hosts']} host(s): {line}; {summary['duration_seconds']} s")


def _print_controls(console: Console, summary: dict[str, Any]) -> None:
    check = summary["options"]["check"]
    table = Table(title="controls (hosts per outcome)" + (": applied = would be applied" if check else ""))
    columns = ("applied", "changed", "waived", "not_applicable", "failed", "other")
    table.add_column("control")
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=48)
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    hidden = 0
    for control, entry in summary["controls"].items():
        shown = {k: len(entry[k]) for k in ("applied", "changed", "waived", "not_applicable", "failed")}
        other = {
            k: len(entry[k])
            for k in ("reported_only", "partly_not_applied", "rolled_back", "not_reached", "skipped", "not_selected")
            if entry[k]
        }
        if not any(shown.values()) and set(other) == {"not_selected"}:
            hidden += 1
            continue
        table.add_row(
            control,
            entry["title"],
            *(_count(shown[k], k) for k in ("applied", "changed", "waived", "not_applicable", "failed")),
            ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in other.items()),
        )
    if table.row_count:
        console.print(table)
    if hidden:
        console.print(f"{hidden} control(s) of these roles were not selected (--tags/--skip) on any host")


def _count(value: int, column: str) -> Text:
    if not value:
        return Text("-", style="dim")
    style = {"failed": "bold red", "waived": "magenta", "not_applicable": "cyan", "changed": "yellow"}.get(column, "")
    return Text(str(value), style=style)


def _print_notes(console: Console, summary: dict[str, Any]) -> None:
    """What was not applied (or only reported) and why, one line per control, action and reason."""
    grouped: dict[tuple[str, str, str], dict[str, set[str]]] = {}
    for note in summary["notes"]:
        key = (str(note["control"]), str(note["action"]), str(note.get("reason") or ""))
        slot = grouped.setdefault(key, {"hosts": set(), "targets": set()})
        slot["hosts"].add(str(note["host"]))
        if note.get("target"):
            slot["targets"].add(str(note["target"]))
    if not grouped:
        return
    console.print("[bold]not applied, or left for review, and why[/bold]")
    for (control, action, reason), slot in sorted(grouped.items()):
        targets = sorted(slot["targets"])
        shown = ", ".join(targets[:4]) + (f" and {len(targets) - 4} more" if len(targets) > 4 else "")
        console.print(
            f"  {control} {action.replace('_', ' ')} on {len(slot['hosts'])} host(s): {reason}"
            + (f" [{shown}]" if shown else ""),
            soft_wrap=True,
            markup=False,
        )

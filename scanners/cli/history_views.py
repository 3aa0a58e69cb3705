"""What `preaudit history ...` and `preaudit metrics` do and print (arguments: scanners.cli.history_cmd)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from rich.console import Console
from rich.table import Table

from scanners.catalog import default_catalog
from scanners.errors import EXIT_REGRESSION, InputError
from scanners.findings import format_timestamp, parse_timestamp
from scanners.findings_file import read_document
from scanners.history.intervals import Interval, Outcome, Timeline
from scanners.history.metrics import render_metrics, write_metrics
from scanners.history.period import build_period_summary, parse_period, period_to_dict
from scanners.history.queries import (
    SEVERITIES,
    FindingLife,
    ScanSummary,
    control_timelines,
    finding_life,
    known_control,
    list_scans,
)
from scanners.history.recording import RecordResult, normalise_signature, record_scan
from scanners.history.store import HistoryStore, open_store
from scanners.history.transfer import export_history, import_history
from scanners.period import PeriodSummary


def parse_since(value: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 time, or InputError."""
    try:
        return datetime.combine(date.fromisoformat(value), time(), UTC)
    except ValueError:
        pass
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InputError(f"--since {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None


def _open(args: argparse.Namespace, *, create: bool = False) -> HistoryStore:
    return open_store(args.store, create=create)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


# --- record ---------------------------------------------------------------------------------


def _record(args: argparse.Namespace) -> int:
    signature = normalise_signature(args.bundle_signature)
    document = read_document(args.findings)
    with _open(args, create=True) as store:
        result = record_scan(store, document, bundle_signature=signature)
        _print_record(result, store.display)
    if args.fail_on_regression and result.regressions:
        return EXIT_REGRESSION
    return 0


def _print_record(result: RecordResult, where: str) -> None:
    if result.already_recorded:
        print(f"scan {result.scan_id} is already recorded in {where}; nothing changed")
    else:
        print(f"recorded scan {result.scan_id} ({result.findings} findings) in {where}")
    for hit in result.regressions:
        print(
            f"regression: {hit.control_id} fails on {hit.resource}, passed in scan {hit.previous_scan} "
            f"({_when(hit.previous_time)} UTC)"
        )
    if result.regressions:
        print(f"{len(result.regressions)} regression(s)")


# --- list -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, not {args.limit}")
    since = parse_since(args.since) if args.since else None
    with _open(args) as store:
        scans = list_scans(store, since=since, limit=args.limit)
        where = store.display
    if args.json:
        print(json.dumps([_scan_dict(s) for s in scans], indent=2))
        return 0
    table = Table(
        title=f"preaudit history: {len(scans)} scan(s) in {where}",
        caption="fail: failing findings (waived excluded), C/H/M/L/I by severity; Δ: change since the previous scan",
    )
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("scan", overflow="fold")
    table.add_column("hosts", min_width=5)
    table.add_column("total", justify="right")
    table.add_column("fail", justify="right")
    table.add_column("C/H/M/L/I", no_wrap=True)
    table.add_column("Δ", justify="right")
    table.add_column("regr", justify="right")
    table.add_column("err", justify="right")
    previous: int | None = None
    for scan in scans:
        delta = "" if previous is None else f"{scan.failing - previous:+d}"
        previous = scan.failing
        table.add_row(
            _when(scan.started_at) + ("" if scan.complete else "\n(incomplete)"),
            scan.id,
            _hosts(scan.hosts),
            str(scan.findings),
            str(scan.failing),
            "/".join(str(scan.failing_by_severity.get(s, 0)) for s in SEVERITIES),
            delta,
            f"[bold red]{scan.regressions}[/]" if scan.regressions else "0",
            str(scan.by_status.get("error", 0)),
        )
    Console().print(table)
    return 0


def _hosts(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:3])
    return shown + (f" (+{len(hosts) - 3})" if len(hosts) > 3 else "") if hosts else "-"


def _scan_dict(scan: ScanSummary) -> dict[str, Any]:
    return {
        "id": scan.id,
        "started_at": format_timestamp(scan.started_at),
        "finished_at": format_timestamp(scan.finished_at),
        "recorded_at": format_timestamp(scan.recorded_at),
        "complete": scan.complete,
        "hosts": scan.hosts,
        "scanners": scan.scanners,
        "tool_version": scan.tool_version,
        "catalog_version": scan.catalog_version,
        "catalog_digest": scan.catalog_digest,
        "vulndb": scan.vulndb,
        "bundle_signature": scan.bundle_signature,
        "findings": scan.findings,
        "by_status": scan.by_status,
        "failing_by_severity": scan.failing_by_severity,
        "regressions": scan.regressions,
    }


# --- control --------------------------------------------------------------------------------


def _control(args: argparse.Namespace) -> int:
    control_id = args.control_id.strip().upper()
    since = parse_since(args.since) if args.since else None
    catalog = default_catalog()
    with _open(args) as store:
        if control_id not in catalog and not known_control(store, control_id):
            raise InputError(f"unknown control id {args.control_id!r} (not in the catalog nor in the history)")
        timelines = control_timelines(store, control_id, since=since, host_pattern=args.host)
    title = catalog.controls[control_id].title if control_id in catalog else ""
    if args.json:
        data = {
            "control_id": control_id,
            "title": title,
            "since": format_timestamp(since) if since else None,
            "host_pattern": args.host,
            "resources": [_timeline_dict(t) for t in timelines],
        }
        print(json.dumps(data, indent=2))
        return 0
    console = Console(soft_wrap=True)
    console.print(f"[bold]{control_id}[/] {title}")
    if not timelines:
        console.print("no scan in the history assessed this control" + (" on matching hosts" if args.host else ""))
    for timeline in timelines:
        _print_timeline(console, timeline)
    return 0


def _interval_dict(interval: Interval) -> dict[str, Any]:
    ended = interval.ended_by
    return {
        "outcome": interval.outcome.value,
        "from": format_timestamp(interval.first.time),
        "from_scan": interval.first.scan_id,
        "to": format_timestamp(interval.last.time),
        "to_scan": interval.last.scan_id,
        "ended_at": format_timestamp(ended.time) if ended else None,
        "ended_by_scan": ended.scan_id if ended else None,
        "hours_to_fix": interval.hours_to_fix,
        "regression": interval.regression,
        "scans": [
            {"scan_id": o.scan.scan_id, "time": format_timestamp(o.scan.time), "status": o.status.value}
            for o in interval.observations
        ],
    }


def _timeline_dict(timeline: Timeline) -> dict[str, Any]:
    fixes = [h for i in timeline.failures if (h := i.hours_to_fix) is not None]
    return {
        "resource": timeline.resource,
        "host": timeline.host,
        "current": timeline.current.value,
        "failures": len(timeline.failures),
        "regressions": len(timeline.regressions),
        "mean_hours_to_fix": sum(fixes) / len(fixes) if fixes else None,
        "intervals": [_interval_dict(i) for i in timeline.intervals],
    }


_STYLE = {Outcome.PASS: "green", Outcome.FAIL: "red", Outcome.UNKNOWN: "yellow"}
_NEXT = {Outcome.PASS: "passed", Outcome.FAIL: "failed", Outcome.UNKNOWN: "unassessed"}


def _print_timeline(console: Console, timeline: Timeline) -> None:
    """One line per interval: its span, the scans that prove its boundaries, and what ended it."""
    console.print(f"[bold]{timeline.resource}[/]: now {timeline.current.value}")
    intervals = timeline.intervals
    for index, interval in enumerate(intervals):
        first, last, ended = interval.first, interval.last, interval.ended_by
        count = len(interval.observations)
        span = f"from {_when(first.time)} ({first.scan_id})"
        if last != first:
            span += f" to {_when(last.time)} ({last.scan_id})"
        span += f", {count} scan{'s' if count > 1 else ''}"
        if interval.outcome is Outcome.FAIL:
            hours = interval.hours_to_fix
            end = (
                f"fixed {_when(ended.time)} ({ended.scan_id}) after {hours:.1f} h"
                if ended and hours is not None
                else "not fixed"
            )
        elif ended is not None:
            end = f"{_NEXT[intervals[index + 1].outcome]} {_when(ended.time)} ({ended.scan_id})"
        else:
            end = "still holds"
        state = interval.outcome.value.upper() + (" regression" if interval.regression else "")
        console.print(f"  [{_STYLE[interval.outcome]}]{state:<15}[/] {span}; {end}", highlight=False)


# --- finding --------------------------------------------------------------------------------


def _finding(args: argparse.Namespace) -> int:
    with _open(args) as store:
        life = finding_life(store, args.fingerprint)
    if args.json:
        print(json.dumps(_life_dict(life), indent=2))
        return 0
    console = Console()
    console.print(f"[bold]{life.control_id}[/] {life.title} on {life.resource} ({life.scanner})")
    console.print(f"fingerprint {life.fingerprint}")
    console.print(
        f"first seen {_when(life.first_seen.time)} (scan {life.first_seen.scan_id}), "
        f"last seen {_when(life.last_seen.time)} (scan {life.last_seen.scan_id}), in {life.scans_seen} scan(s)"
    )
    table = Table(title="status changes", title_justify="left")
    for column in ("time (UTC)", "scan", "from", "to"):
        table.add_column(column)
    for change in life.changes:
        table.add_row(_when(change.scan.time), change.scan.scan_id, change.previous or "-", change.status)
    console.print(table)
    return 0


def _life_dict(life: FindingLife) -> dict[str, Any]:
    return {
        "fingerprint": life.fingerprint,
        "control_id": life.control_id,
        "title": life.title,
        "resource": life.resource,
        "host": life.host,
        "scanner": life.scanner,
        "first_seen": {"scan_id": life.first_seen.scan_id, "time": format_timestamp(life.first_seen.time)},
        "last_seen": {"scan_id": life.last_seen.scan_id, "time": format_timestamp(life.last_seen.time)},
        "scans_seen": life.scans_seen,
        "current": life.current,
        "changes": [
            {
                "scan_id": c.scan.scan_id,
                "time": format_timestamp(c.scan.time),
                "from": c.previous,
                "to": c.status,
            }
            for c in life.changes
        ],
    }


# --- period ---------------------------------------------------------------------------------


def _period(args: argparse.Namespace) -> int:
    start, end = parse_period(args.period)
    with _open(args) as store:
        summary = build_period_summary(store, start, end)
    if args.json:
        print(json.dumps(period_to_dict(summary), indent=2))
        return 0
    _print_period(Console(), summary)
    return 0


def _print_period(console: Console, summary: PeriodSummary) -> None:
    console.print(f"[bold]{summary.start} .. {summary.end}[/]: {summary.scans} scan(s)")
    requirements = Table(title="requirements: share of scans in which they passed", title_justify="left")
    for column in ("framework", "requirement", "passed", "assessed", "share"):
        requirements.add_column(column, justify="left" if column in ("framework", "requirement") else "right")
    for r in summary.requirements:
        requirements.add_row(
            r.framework, r.requirement, str(r.scans_passed), str(r.scans_assessed), f"{r.share_passed:.1%}"
        )
    console.print(requirements)
    regressions = Table(title=f"regressions: {len(summary.regressions)}", title_justify="left")
    regressions.add_column("control", no_wrap=True)
    regressions.add_column("resource")
    regressions.add_column("failed (UTC) / scan", no_wrap=True)
    regressions.add_column("fixed (UTC) / scan", no_wrap=True)
    regressions.add_column("to fix", justify="right", no_wrap=True)
    for g in summary.regressions:
        hours = g.hours_to_fix
        regressions.add_row(
            g.control_id,
            g.resource,
            f"{_when(g.failed_at)}\n{g.failed_scan}",
            f"{_when(g.fixed_at)}\n{g.fixed_scan}" if g.fixed_at else "not fixed",
            f"{hours:.1f} h" if hours is not None else "-",
        )
    console.print(regressions)
    series = Table(title="failing findings by severity", title_justify="left")
    series.add_column("scan time (UTC)")
    series.add_column("scan")
    for severity in SEVERITIES:
        series.add_column(severity, justify="right")
    for point in summary.severity_series:
        series.add_row(_when(point.time), point.scan_id, *(str(point.failing.get(s, 0)) for s in SEVERITIES))
    console.print(series)


# --- export / import / metrics --------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    with _open(args) as store:
        result = export_history(store, args.file)
        print(f"exported {result.scans} scan(s), {result.findings} finding(s) from {store.display} to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    with _open(args, create=True) as store:
        result = import_history(store, args.file)
        print(
            f"imported {len(result.imported)} scan(s) into {store.display}"
            + (f"; {len(result.already_present)} already present, skipped" if result.already_present else "")
            + (f"; {result.regressions} regression(s)" if result.regressions else "")
        )
    return 0


def _metrics(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.out is None:
            sys.stdout.write(render_metrics(store).decode("utf-8"))
        else:
            write_metrics(store, args.out)
    return 0


ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _list,
    "record": _record,
    "control": _control,
    "finding": _finding,
    "period": _period,
    "export": _export,
    "import": _import,
    "metrics": _metrics,
}

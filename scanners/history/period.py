"""The "over the audit period" summary (scanners.period.PeriodSummary) from the history store.

The period is whole UTC days, both ends included; a scan belongs to it by its start time.

- Requirements: for each framework requirement, the scans of the period in which it was
  assessed (its status per scanners.compliance was pass, waived, fail or error; not-applicable
  is not an assessment) and those in which it passed (pass or waived).
- Regressions: every failure that followed a pass (scanners.history.intervals) and began in
  the period, with the scan that fixed it, even when the fix came after the period ended.
- Severity series: failing (not waived) findings by severity in each scan of the period.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from scanners.compliance import RequirementStatus
from scanners.errors import InputError
from scanners.findings import Status, format_timestamp
from scanners.history.intervals import Observation, ScanRef, build_intervals, fold_statuses
from scanners.history.models import FindingRow, RequirementRow, ScanRow
from scanners.history.queries import SEVERITIES
from scanners.history.store import HistoryStore
from scanners.period import PeriodSummary, Regression, RequirementPeriod, SeverityPoint

_PERIOD = re.compile(r"^\s*(\S+)\s*\.\.\s*(\S+)\s*$")
# Not applicable is no assessment; an error is an assessment that failed to prove the requirement.
ASSESSED_REQUIREMENT = frozenset(
    {RequirementStatus.PASS, RequirementStatus.WAIVED, RequirementStatus.FAIL, RequirementStatus.ERROR}
)
PASSED_REQUIREMENT = frozenset({RequirementStatus.PASS, RequirementStatus.WAIVED})


def parse_period(text: str) -> tuple[date, date]:
    """``START..END`` (ISO dates, both included) or InputError."""
    match = _PERIOD.match(text)
    if not match:
        raise InputError(f"period {text!r} is not START..END (e.g. 2026-06-01..2026-11-30)")
    try:
        start, end = (date.fromisoformat(part) for part in match.groups())
    except ValueError:
        raise InputError(f"period {text!r}: dates must be YYYY-MM-DD") from None
    if start > end:
        raise InputError(f"period {text!r} ends before it starts")
    return start, end


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[first instant, instant after the last day) in UTC."""
    return datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC)


def build_period_summary(store: HistoryStore, start: date, end: date) -> PeriodSummary:
    if start > end:
        raise InputError(f"period {start}..{end} ends before it starts")
    lower, upper = period_bounds(start, end)
    in_period = (ScanRow.started_at >= lower) & (ScanRow.started_at < upper)
    with store.reading() as conn:
        scans = conn.execute(
            select(ScanRow.id, ScanRow.started_at).where(in_period).order_by(ScanRow.started_at, ScanRow.id)
        ).all()
        requirement_rows = conn.execute(
            select(
                RequirementRow.framework,
                RequirementRow.requirement,
                func.count(),
                func.sum(case((RequirementRow.status.in_(sorted(s.value for s in PASSED_REQUIREMENT)), 1), else_=0)),
            )
            .join(ScanRow, ScanRow.id == RequirementRow.scan_id)
            .where(in_period, RequirementRow.status.in_(sorted(s.value for s in ASSESSED_REQUIREMENT)))
            .group_by(RequirementRow.framework, RequirementRow.requirement)
            .order_by(RequirementRow.framework, RequirementRow.requirement)
        ).all()
        severity_rows = conn.execute(
            select(FindingRow.scan_id, FindingRow.severity, func.count())
            .join(ScanRow, ScanRow.id == FindingRow.scan_id)
            .where(in_period, FindingRow.status == Status.FAIL.value)
            .group_by(FindingRow.scan_id, FindingRow.severity)
        ).all()
        regressed = conn.execute(
            select(FindingRow.control_id, FindingRow.resource_label)
            .where(
                FindingRow.regression.is_(True),
                FindingRow.scan_started_at >= lower,
                FindingRow.scan_started_at < upper,
            )
            .distinct()
        ).all()
        history = _histories(conn, {(c, r) for c, r in regressed})
    failing: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEVERITIES, 0))
    for scan_id, severity, count in severity_rows:
        failing[scan_id][severity] = count
    return PeriodSummary(
        start=start,
        end=end,
        scans=len(scans),
        requirements=[
            RequirementPeriod(f, r, int(assessed), int(passed or 0)) for f, r, assessed, passed in requirement_rows
        ],
        regressions=_regressions(history, lower, upper),
        severity_series=[SeverityPoint(scan_id, started, dict(failing[scan_id])) for scan_id, started in scans],
    )


_Key = tuple[str, str]


def _histories(conn: Connection, keys: set[_Key]) -> dict[_Key, tuple[str | None, list[Observation]]]:
    """Every observation of the given (control, resource) pairs, whole history, folded per scan."""
    statuses: dict[_Key, dict[ScanRef, list[str]]] = defaultdict(lambda: defaultdict(list))
    hosts: dict[_Key, str | None] = {}
    for control_id in sorted({c for c, _ in keys}):
        rows = conn.execute(
            select(
                FindingRow.resource_label,
                FindingRow.host,
                FindingRow.scan_id,
                FindingRow.scan_started_at,
                FindingRow.status,
            ).where(FindingRow.control_id == control_id)
        )
        for resource, host, scan_id, started, status in rows:
            if (control_id, resource) in keys:
                statuses[(control_id, resource)][ScanRef(started, scan_id)].append(status)
                hosts[(control_id, resource)] = host
    return {
        key: (hosts[key], [Observation(ref, fold_statuses(s)) for ref, s in by_scan.items()])
        for key, by_scan in statuses.items()
    }


def _regressions(
    history: dict[_Key, tuple[str | None, list[Observation]]], lower: datetime, upper: datetime
) -> list[Regression]:
    found = []
    for (control_id, resource), (host, observations) in history.items():
        for interval in build_intervals(observations):
            if not interval.regression or not lower <= interval.first.time < upper:
                continue
            fixed = interval.ended_by
            found.append(
                Regression(
                    control_id=control_id,
                    resource=resource,
                    host=host,
                    failed_at=interval.first.time,
                    failed_scan=interval.first.scan_id,
                    fixed_at=fixed.time if fixed else None,
                    fixed_scan=fixed.scan_id if fixed else None,
                )
            )
    return sorted(found, key=lambda r: (r.failed_at, r.control_id, r.resource))


def period_to_dict(summary: PeriodSummary) -> dict[str, Any]:
    """JSON-ready form of a summary, with the derived share and hours to fix spelled out."""

    def plain(value: Any) -> Any:
        return format_timestamp(value) if isinstance(value, datetime) else value

    data: dict[str, Any] = {"start": summary.start.isoformat(), "end": summary.end.isoformat(), "scans": summary.scans}
    data["requirements"] = [{**asdict(r), "share_passed": round(r.share_passed, 4)} for r in summary.requirements]
    data["regressions"] = [
        {**{k: plain(v) for k, v in asdict(r).items()}, "hours_to_fix": r.hours_to_fix} for r in summary.regressions
    ]
    data["severity_series"] = [
        {"scan_id": p.scan_id, "time": format_timestamp(p.time), "failing": dict(p.failing)}
        for p in summary.severity_series
    ]
    return data

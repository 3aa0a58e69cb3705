"""Drift: a control that passed on a resource in its previous scan and fails now is a regression.

"Previous" is the latest earlier scan (by start time, then scan id) in which the control was
assessed on that resource, i.e. had a pass, waived or fail finding there; scans where it was
not assessed, only errored or was not applicable are looked through. A control passes on a
resource in a scan when none of its findings there fail and at least one passes or is waived.
The look-ups run in the database, one index seek per (control, resource), whatever the history size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, Tuple, bindparam, case, exists, func, literal, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import FromClause

from scanners.findings import Status
from scanners.history.models import Base, FindingRow, ScanRow, UTCDateTime

ASSESSED = (Status.PASS.value, Status.WAIVED.value, Status.FAIL.value)
_FAIL = Status.FAIL.value
_FINDINGS = Base.metadata.tables[FindingRow.__tablename__]
_SCANS = Base.metadata.tables[ScanRow.__tablename__]


@dataclass(frozen=True, slots=True)
class RegressionHit:
    """A control failing on a resource in this scan that passed there in the previous scan."""

    control_id: str
    resource: str
    host: str | None
    previous_scan: str
    previous_time: datetime


def _position(started: datetime, scan_id: str) -> Tuple:
    return tuple_(literal(started, UTCDateTime()), literal(scan_id, String()))


def _order(table: FromClause) -> Tuple:
    return tuple_(table.c.scan_started_at, table.c.scan_id)


def find_regressions(conn: Connection, scan_id: str, started: datetime) -> list[RegressionHit]:
    """Regressions of the scan ``scan_id`` (already inserted) against the scans before it."""
    f = _FINDINGS
    failing = (
        select(f.c.control_id, f.c.resource_label, func.max(f.c.host).label("host"))
        .where(f.c.scan_id == scan_id, f.c.status == _FAIL)
        .group_by(f.c.control_id, f.c.resource_label)
        .subquery("failing")
    )
    prev = f.alias("prev")
    previous_scan = (
        select(prev.c.scan_id)
        .where(
            prev.c.control_id == failing.c.control_id,
            prev.c.resource_label == failing.c.resource_label,
            prev.c.status.in_(ASSESSED),
            _order(prev) < _position(started, scan_id),
        )
        .order_by(prev.c.scan_started_at.desc(), prev.c.scan_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    looked = select(
        failing.c.control_id, failing.c.resource_label, failing.c.host, previous_scan.label("previous_scan")
    ).subquery("looked")
    stmt = (
        select(looked.c.control_id, looked.c.resource_label, looked.c.host, looked.c.previous_scan, _SCANS.c.started_at)
        .select_from(looked)
        .join(_SCANS, _SCANS.c.id == looked.c.previous_scan)
        .where(~_failed_in(looked.c.previous_scan, looked.c.control_id, looked.c.resource_label))
        .order_by(looked.c.resource_label, looked.c.control_id)
    )
    return [RegressionHit(row[0], row[1], row[2], row[3], row[4]) for row in conn.execute(stmt)]


def _failed_in(
    scan_id: ColumnElement[str], control_id: ColumnElement[str], resource: ColumnElement[str]
) -> ColumnElement[bool]:
    there = _FINDINGS.alias("there")
    return exists().where(
        there.c.scan_id == scan_id,
        there.c.control_id == control_id,
        there.c.resource_label == resource,
        there.c.status == _FAIL,
    )


def set_regression_flags(conn: Connection, flags: list[tuple[str, str, str, bool]]) -> None:
    """Set the flag on the failing findings of (scan id, control id, resource label)."""
    if not flags:
        return
    f = _FINDINGS
    stmt = (
        update(f)
        .where(
            f.c.scan_id == bindparam("b_scan"),
            f.c.control_id == bindparam("b_control"),
            f.c.resource_label == bindparam("b_resource"),
            f.c.status == _FAIL,
        )
        .values(regression=bindparam("b_flag"))
    )
    conn.execute(
        stmt,
        [{"b_scan": s, "b_control": c, "b_resource": r, "b_flag": flag} for s, c, r, flag in flags],
    )


def refresh_following(conn: Connection, scan_id: str, started: datetime) -> int:
    """After recording a scan older than others, correct the flags of the scans that follow it.

    For each control and resource assessed in this scan, the next scan that assessed it now
    has this one as its previous scan: its failures are regressions exactly when this scan
    passed. Returns the number of (scan, control, resource) flags rewritten.
    """
    later_scan = _SCANS.alias("later_scan")
    later = exists().where(tuple_(later_scan.c.started_at, later_scan.c.id) > _position(started, scan_id))
    if not conn.execute(select(later)).scalar():
        return 0
    f = _FINDINGS
    keys = (
        select(
            f.c.control_id,
            f.c.resource_label,
            func.max(case((f.c.status == _FAIL, 1), else_=0)).label("failing"),
        )
        .where(f.c.scan_id == scan_id, f.c.status.in_(ASSESSED))
        .group_by(f.c.control_id, f.c.resource_label)
        .subquery("keys")
    )
    nxt = f.alias("nxt")
    next_scan = (
        select(nxt.c.scan_id)
        .where(
            nxt.c.control_id == keys.c.control_id,
            nxt.c.resource_label == keys.c.resource_label,
            nxt.c.status.in_(ASSESSED),
            _order(nxt) > _position(started, scan_id),
        )
        .order_by(nxt.c.scan_started_at, nxt.c.scan_id)
        .limit(1)
        .scalar_subquery()
    )
    looked = select(keys.c.control_id, keys.c.resource_label, keys.c.failing, next_scan.label("next_scan")).subquery(
        "looked"
    )
    stmt = select(looked.c.next_scan, looked.c.control_id, looked.c.resource_label, looked.c.failing).where(
        looked.c.next_scan.is_not(None), _failed_in(looked.c.next_scan, looked.c.control_id, looked.c.resource_label)
    )
    flags = [(row[0], row[1], row[2], not row[3]) for row in conn.execute(stmt)]
    set_regression_flags(conn, flags)
    return len(flags)

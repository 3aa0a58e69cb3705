"""Read the history: scans with their tallies, a control's timelines, a finding's life, a scan's document."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, Severity, Status
from scanners.findings_file import FindingsDocument, ScanInfo
from scanners.history.intervals import Observation, ScanRef, Timeline, build_intervals, fold_statuses, overlaps
from scanners.history.models import FindingRow, ScanRow
from scanners.history.store import HistoryStore

SEVERITIES = tuple(s.value for s in Severity)
STATUSES = tuple(s.value for s in Status)
ABSENT = "absent"
_MIN_PREFIX = 8


@dataclass(frozen=True, slots=True)
class ScanSummary:
    id: str
    started_at: datetime
    finished_at: datetime
    recorded_at: datetime
    complete: bool
    hosts: list[str]
    scanners: list[str]
    tool_version: str
    catalog_version: str
    catalog_digest: str
    vulndb: dict[str, Any] | None
    bundle_signature: str | None
    findings: int
    by_status: dict[str, int] = field(default_factory=dict)
    failing_by_severity: dict[str, int] = field(default_factory=dict)
    regressions: int = 0

    @property
    def failing(self) -> int:
        return self.by_status.get(Status.FAIL.value, 0)


def _scan_order() -> tuple[Any, Any]:
    return ScanRow.started_at, ScanRow.id


def list_scans(
    store: HistoryStore, *, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
) -> list[ScanSummary]:
    """Scans oldest first, started in [since, until); with ``limit``, only the most recent ones."""
    stmt = select(ScanRow)
    if since is not None:
        stmt = stmt.where(ScanRow.started_at >= since)
    if until is not None:
        stmt = stmt.where(ScanRow.started_at < until)
    stmt = stmt.order_by(*(c.desc() for c in _scan_order()))
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.reading() as conn:
        scans = list(reversed(Session(conn).scalars(stmt).all()))
        return _with_tallies(conn, scans)


def latest_scan(store: HistoryStore) -> ScanSummary | None:
    scans = list_scans(store, limit=1)
    return scans[0] if scans else None


def _with_tallies(conn: Connection, scans: list[ScanRow]) -> list[ScanSummary]:
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    failing: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEVERITIES, 0))
    regressions: dict[str, int] = defaultdict(int)
    ids = [s.id for s in scans]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            select(
                FindingRow.scan_id,
                FindingRow.status,
                FindingRow.severity,
                func.count(),
                func.sum(case((FindingRow.regression.is_(True), 1), else_=0)),
            )
            .where(FindingRow.scan_id.in_(chunk))
            .group_by(FindingRow.scan_id, FindingRow.status, FindingRow.severity)
        )
        for scan_id, status, severity, count, regressed in rows:
            by_status[scan_id][status] = by_status[scan_id].get(status, 0) + count
            if status == Status.FAIL.value:
                failing[scan_id][severity] += count
            regressions[scan_id] += regressed
    return [
        ScanSummary(
            id=s.id,
            started_at=s.started_at,
            finished_at=s.finished_at,
            recorded_at=s.recorded_at,
            complete=s.complete,
            hosts=list(s.hosts),
            scanners=list(s.scanners),
            tool_version=s.tool_version,
            catalog_version=s.catalog_version,
            catalog_digest=s.catalog_digest,
            vulndb=s.vulndb,
            bundle_signature=s.bundle_signature,
            findings=s.findings_count,
            by_status={status: by_status[s.id].get(status, 0) for status in STATUSES},
            failing_by_severity=dict(failing[s.id]),
            regressions=regressions[s.id],
        )
        for s in scans
    ]


def known_control(store: HistoryStore, control_id: str) -> bool:
    with store.reading() as conn:
        found = conn.execute(select(FindingRow.id).where(FindingRow.control_id == control_id).limit(1)).first()
    return found is not None


def control_timelines(
    store: HistoryStore, control_id: str, *, since: datetime | None = None, host_pattern: str | None = None
) -> list[Timeline]:
    """One timeline per resource the control was observed on, intervals cut from its whole history.

    ``since`` keeps the intervals that still held at or after it (so a failure that began
    earlier and was fixed later is shown whole); ``host_pattern`` is an fnmatch pattern on the
    host (or, for findings without a host, on the resource label).
    """
    with store.reading() as conn:
        rows = conn.execute(
            select(
                FindingRow.resource_label,
                FindingRow.host,
                FindingRow.scan_id,
                FindingRow.scan_started_at,
                FindingRow.status,
            ).where(FindingRow.control_id == control_id)
        ).all()
    grouped: dict[str, dict[ScanRef, list[str]]] = defaultdict(lambda: defaultdict(list))
    hosts: dict[str, str | None] = {}
    for resource, host, scan_id, started, status in rows:
        if host_pattern and not fnmatch.fnmatchcase(host or resource, host_pattern):
            continue
        grouped[resource][ScanRef(started, scan_id)].append(status)
        hosts[resource] = host
    timelines = []
    for resource in sorted(grouped):
        observations = [Observation(ref, fold_statuses(statuses)) for ref, statuses in grouped[resource].items()]
        intervals = build_intervals(observations)
        if since is not None:
            intervals = [i for i in intervals if overlaps(i, since)]
        if intervals:
            timelines.append(Timeline(control_id, resource, hosts[resource], tuple(intervals)))
    return timelines


@dataclass(frozen=True, slots=True)
class StatusChange:
    scan: ScanRef
    status: str  # a finding status, or "absent" when a scan that covered the resource did not report it
    previous: str | None


@dataclass(frozen=True, slots=True)
class FindingLife:
    fingerprint: str
    control_id: str
    title: str
    resource: str
    host: str | None
    scanner: str
    first_seen: ScanRef
    last_seen: ScanRef
    scans_seen: int
    changes: tuple[StatusChange, ...]

    @property
    def current(self) -> str:
        return self.changes[-1].status


def _covers(scan_hosts: list[str], scan_scanners: list[str], host: str | None, scanner: str) -> bool:
    """Whether a scan looked where the finding lives, so that not reporting it means it is gone."""
    if host is None:
        return scanner in scan_scanners
    return host in scan_hosts and (not scan_scanners or scanner in scan_scanners)


def finding_life(store: HistoryStore, fingerprint: str) -> FindingLife:
    """First seen, last seen and each status change of one finding (a fingerprint or a unique prefix of one)."""
    prefix = fingerprint.strip().lower()
    if len(prefix) < _MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise InputError(f"{fingerprint!r} is not a fingerprint (at least {_MIN_PREFIX} hexadecimal digits)")
    with store.reading() as conn:
        matches = conn.execute(
            select(FindingRow.fingerprint)
            .where(FindingRow.fingerprint >= prefix, FindingRow.fingerprint < prefix + "g")
            .distinct()
            .limit(2)
        ).all()
        if not matches:
            raise InputError(f"no finding with fingerprint {prefix} in the history")
        if len(matches) > 1:
            raise InputError(f"fingerprint prefix {prefix} is ambiguous; give more digits")
        full = matches[0][0]
        rows = conn.execute(
            select(
                FindingRow.scan_id,
                FindingRow.scan_started_at,
                FindingRow.status,
                FindingRow.control_id,
                FindingRow.title,
                FindingRow.resource_label,
                FindingRow.host,
                FindingRow.scanner,
            )
            .where(FindingRow.fingerprint == full)
            .order_by(FindingRow.scan_started_at, FindingRow.scan_id)
        ).all()
        first = rows[0]
        scans = conn.execute(
            select(ScanRow.id, ScanRow.started_at, ScanRow.hosts, ScanRow.scanners)
            .where(ScanRow.started_at >= first.scan_started_at)
            .order_by(*_scan_order())
        ).all()
    seen: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        seen[row.scan_id].append(row.status)
    changes: list[StatusChange] = []
    previous: str | None = None
    for scan_id, started, scan_hosts, scan_scanners in scans:
        if scan_id in seen:
            status = fold_statuses(seen[scan_id]).value
        elif _covers(scan_hosts, scan_scanners, first.host, first.scanner):
            status = ABSENT
        else:
            continue
        if status != previous:
            changes.append(StatusChange(ScanRef(started, scan_id), status, previous))
            previous = status
    last = rows[-1]
    return FindingLife(
        fingerprint=full,
        control_id=first.control_id,
        title=first.title,
        resource=first.resource_label,
        host=first.host,
        scanner=first.scanner,
        first_seen=ScanRef(first.scan_started_at, first.scan_id),
        last_seen=ScanRef(last.scan_started_at, last.scan_id),
        scans_seen=len(seen),
        changes=tuple(changes),
    )


def scan_ids(conn: Connection) -> list[str]:
    """Every scan id, oldest first."""
    return list(conn.execute(select(ScanRow.id).order_by(*_scan_order())).scalars())


def load_document(conn: Connection, scan_id: str) -> tuple[FindingsDocument, ScanRow]:
    """The findings document of a recorded scan, as it was recorded, and its stored scan row."""
    scan = Session(conn).scalars(select(ScanRow).where(ScanRow.id == scan_id)).one_or_none()
    if scan is None:
        raise InputError(f"no scan {scan_id} in the history")
    # Plain rows rather than ORM objects: a scan may hold tens of thousands of findings.
    rows = conn.execute(select(*FindingRow.__table__.c).where(FindingRow.scan_id == scan_id).order_by(FindingRow.id))
    catalog: dict[str, Any] = {"version": scan.catalog_version, "digest": scan.catalog_digest}
    if scan.catalog_controls is not None:
        catalog["controls"] = scan.catalog_controls
    document = FindingsDocument(
        scan=ScanInfo(
            id=scan.id,
            started_at=scan.started_at,
            finished_at=scan.finished_at,
            complete=scan.complete,
            hosts=list(scan.hosts),
            scanners=list(scan.scanners),
            targets=dict(scan.targets),
            vulndb=scan.vulndb,
        ),
        catalog=catalog,
        findings=[_finding(row) for row in rows],
        components=dict(scan.components),
        tool_version=scan.tool_version,
    )
    return document, scan


def _finding(row: Row[Any]) -> Finding:
    return Finding(
        control_id=row.control_id,
        title=row.title,
        severity=Severity(row.severity),
        status=Status(row.status),
        resource=Resource.from_dict(row.resource),
        scanner=row.scanner,
        evidence=Evidence.from_dict(row.evidence),
        remediation=row.remediation,
        references={k: list(v) for k, v in row.references.items()},
        message=row.message,
        rule=row.rule,
        discriminator=row.discriminator,
        score=row.score,
        fingerprint=row.fingerprint,
        observed_at=row.observed_at,
        waiver=row.waiver,
    )

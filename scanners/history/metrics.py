"""Prometheus metrics of the latest recorded scan, for node_exporter's textfile collector.

Written atomically (a collector must never read half a file) in the text exposition format.
Every severity, every catalog framework and every scanned host gets a series even at zero, so
that an alert such as ``preaudit_regressions > 0`` or a readiness drop compares numbers
rather than a series that silently disappeared.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest
from sqlalchemy import select

from scanners.catalog import FRAMEWORKS
from scanners.compliance import RequirementStatus
from scanners.errors import InputError
from scanners.findings import Status
from scanners.fsutil import write_bytes_atomic
from scanners.history.models import FindingRow, RequirementRow
from scanners.history.period import ASSESSED_REQUIREMENT, PASSED_REQUIREMENT
from scanners.history.queries import SEVERITIES, STATUSES, latest_scan
from scanners.history.store import HistoryStore

NO_HOST = "none"


def build_registry(store: HistoryStore) -> CollectorRegistry:
    """A registry holding the metrics of the latest scan in the store."""
    scan = latest_scan(store)
    if scan is None:
        raise InputError(f"store {store.display} holds no scans yet (record one with `preaudit history record`)")
    with store.reading() as conn:
        requirements = conn.execute(
            select(RequirementRow.framework, RequirementRow.status).where(RequirementRow.scan_id == scan.id)
        ).all()
        failing = conn.execute(
            select(FindingRow.severity, FindingRow.host, FindingRow.references).where(
                FindingRow.scan_id == scan.id, FindingRow.status == Status.FAIL.value
            )
        ).all()

    registry = CollectorRegistry()
    Info("preaudit_scan", "The latest recorded scan.", registry=registry).info(
        {"scan_id": scan.id, "tool_version": scan.tool_version, "catalog_version": scan.catalog_version}
    )
    Gauge("preaudit_scan_start_timestamp_seconds", "Start of the latest scan (Unix time).", registry=registry).set(
        scan.started_at.timestamp()
    )
    Gauge("preaudit_scan_finish_timestamp_seconds", "End of the latest scan (Unix time).", registry=registry).set(
        scan.finished_at.timestamp()
    )
    Gauge("preaudit_scan_complete", "1 when the latest scan ran to completion.", registry=registry).set(
        1 if scan.complete else 0
    )
    Gauge(
        "preaudit_regressions",
        "Controls failing in the latest scan that passed in the previous one.",
        registry=registry,
    ).set(scan.regressions)
    findings = Gauge("preaudit_findings", "Findings of the latest scan by status.", ["status"], registry=registry)
    for status in STATUSES:
        findings.labels(status=status).set(scan.by_status.get(status, 0))

    by_severity = Gauge(
        "preaudit_failing_findings", "Failing findings of the latest scan by severity.", ["severity"], registry=registry
    )
    for severity in SEVERITIES:
        by_severity.labels(severity=severity).set(scan.failing_by_severity.get(severity, 0))

    per_host: Counter[tuple[str, str]] = Counter((host or NO_HOST, severity) for severity, host, _ in failing)
    by_host = Gauge(
        "preaudit_failing_findings_by_host",
        "Failing findings of the latest scan by host and severity.",
        ["host", "severity"],
        registry=registry,
    )
    for host in sorted(set(scan.hosts) | {h for h, _ in per_host}):
        for severity in SEVERITIES:
            by_host.labels(host=host, severity=severity).set(per_host[(host, severity)])

    per_framework: Counter[str] = Counter(f for _, _, refs in failing for f in refs if f in FRAMEWORKS and refs[f])
    by_framework = Gauge(
        "preaudit_failing_findings_by_framework",
        "Failing findings of the latest scan that bear on a framework.",
        ["framework"],
        registry=registry,
    )
    assessed: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    for framework, status in requirements:
        if RequirementStatus(status) in ASSESSED_REQUIREMENT:
            assessed[framework] += 1
        if RequirementStatus(status) in PASSED_REQUIREMENT:
            passed[framework] += 1
    assessed_gauge = Gauge(
        "preaudit_requirements_assessed",
        "Framework requirements assessed by the latest scan (pass, waived, fail or error).",
        ["framework"],
        registry=registry,
    )
    passed_gauge = Gauge(
        "preaudit_requirements_passed",
        "Framework requirements that passed (or were waived) in the latest scan.",
        ["framework"],
        registry=registry,
    )
    readiness = Gauge(
        "preaudit_readiness_ratio",
        "Passed over assessed requirements per framework in the latest scan (absent when none was assessed).",
        ["framework"],
        registry=registry,
    )
    for framework in FRAMEWORKS:
        by_framework.labels(framework=framework).set(per_framework[framework])
        assessed_gauge.labels(framework=framework).set(assessed[framework])
        passed_gauge.labels(framework=framework).set(passed[framework])
        if assessed[framework]:
            readiness.labels(framework=framework).set(passed[framework] / assessed[framework])
    return registry


def render_metrics(store: HistoryStore) -> bytes:
    return generate_latest(build_registry(store))


def write_metrics(store: HistoryStore, path: Path) -> None:
    """Write the metrics file atomically (the textfile collector reads only ``*.prom`` files)."""
    write_bytes_atomic(path, render_metrics(store))

"""JSON exports: the findings with waivers applied (the project's findings schema) and the report
itself (readiness, waivers, diff, period; ``scanners/schemas/report.schema.json``).

Both are validated against their schema before they are written (``validation``): an export that
does not match its documented shape is a bug, and failing loudly beats handing it to an auditor.
"""

from __future__ import annotations

import json
from typing import Any

from scanners.findings import format_timestamp
from scanners.findings_file import FindingsDocument
from scanners.period import PeriodSummary
from scanners.report.diff import ScanDiff
from scanners.report.model import Report
from scanners.report.readiness import Readiness
from scanners.report.schemas import REPORT_SCHEMA_ID
from scanners.report.validation import check_findings_export, check_report_export


def findings_document(report: Report) -> dict[str, Any]:
    source = report.document
    annotated = FindingsDocument(
        scan=source.scan, catalog=source.catalog, findings=list(report.findings), components=source.components
    )
    data = annotated.to_dict()
    check_findings_export(data)
    return data


def render_findings_json(report: Report) -> str:
    return json.dumps(findings_document(report), indent=2, ensure_ascii=False) + "\n"


def _readiness(readiness: Readiness) -> dict[str, Any]:
    return {
        "overall": readiness.overall.to_dict(),
        "frameworks": [
            {
                "key": fr.key,
                "name": fr.name,
                "version": fr.version,
                **fr.score.to_dict(),
                "requirements": [
                    {
                        "id": r.id,
                        "title": r.title,
                        "section": r.section,
                        "status": r.status,
                        "manual": r.manual,
                        "listed": r.listed,
                        "weight": r.weight,
                        "worst_severity": r.worst_severity.value if r.worst_severity else None,
                        "findings": dict(sorted(r.finding_counts.items())),
                        "controls": list(r.controls),
                        "failing": list(r.failing),
                        "failing_total": r.failing_total,
                    }
                    for r in fr.requirements
                ],
            }
            for fr in readiness.frameworks
        ],
    }


def _diff(diff: ScanDiff) -> dict[str, Any]:
    return {
        "baseline": {"scan_id": diff.baseline_scan_id, "started_at": format_timestamp(diff.baseline_started_at)},
        "counts": dict(sorted(diff.counts.items())),
        "changes": [
            {
                "change": e.change.value,
                "fingerprint": e.fingerprint,
                "control_id": e.control_id,
                "rule": e.rule,
                "title": e.title,
                "severity": e.severity,
                "resource": e.resource,
                "baseline_status": e.baseline_status,
                "current_status": e.current_status,
            }
            for e in diff.entries
        ],
    }


def period_dict(period: PeriodSummary) -> dict[str, Any]:
    return {
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "scans": period.scans,
        "requirements": [
            {
                "framework": r.framework,
                "requirement": r.requirement,
                "scans_assessed": r.scans_assessed,
                "scans_passed": r.scans_passed,
                "share_passed": round(r.share_passed, 4),
            }
            for r in period.requirements
        ],
        "regressions": [
            {
                "control_id": g.control_id,
                "resource": g.resource,
                "host": g.host,
                "failed_at": format_timestamp(g.failed_at),
                "failed_scan": g.failed_scan,
                "fixed_at": format_timestamp(g.fixed_at) if g.fixed_at else None,
                "fixed_scan": g.fixed_scan,
                "hours_to_fix": round(g.hours_to_fix, 2) if g.hours_to_fix is not None else None,
            }
            for g in period.regressions
        ],
        "severity_series": [
            {"scan_id": p.scan_id, "time": format_timestamp(p.time), "failing": dict(sorted(p.failing.items()))}
            for p in period.severity_series
        ],
    }


def report_document(report: Report) -> dict[str, Any]:
    scan = report.document.scan
    by_status: dict[str, int] = {}
    failing_by_severity: dict[str, int] = {}
    for f in report.findings:
        by_status[f.status.value] = by_status.get(f.status.value, 0) + 1
        if f.is_problem:
            failing_by_severity[f.severity.value] = failing_by_severity.get(f.severity.value, 0) + 1
    data: dict[str, Any] = {
        "schema": REPORT_SCHEMA_ID,
        "tool": {"name": "preaudit", "version": report.tool_version},
        "generated_at": format_timestamp(report.generated_at),
        "waivers_judged_on": report.today.isoformat(),
        "catalog": dict(report.document.catalog),
        "rendering_catalog": dict(report.rendering_catalog),
        "scan": scan.to_dict(),
        "summary": {
            "findings": len(report.findings),
            "by_status": dict(sorted(by_status.items())),
            "failing_by_severity": dict(sorted(failing_by_severity.items())),
        },
        "readiness": _readiness(report.readiness),
        "waivers": {
            "active": [{**u.waiver, "findings": list(u.fingerprints)} for u in report.waivers.active],
            "expired": [{**u.waiver, "findings": list(u.fingerprints)} for u in report.waivers.expired],
            "unused": [dict(w) for w in report.waivers.unused],
        },
        "diff": _diff(report.diff) if report.diff else None,
        "period": period_dict(report.period) if report.period else None,
    }
    return data


def render_report_json(report: Report) -> str:
    data = report_document(report)
    check_report_export(data)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

"""CSV for auditors: one row per finding (findings.csv) and one per framework requirement
(requirements.csv) with its status and the evidence behind it.

Auditors open these in a spreadsheet, so a cell that starts with ``=``, ``+``, ``-``, ``@`` or a
control character is prefixed with a quote: scanned content must never become a formula. Cells
are capped below the 32,767 characters a spreadsheet cell holds; the JSON export has everything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from scanners.catalog import FRAMEWORKS
from scanners.findings import Finding, format_timestamp
from scanners.report.model import Report
from scanners.report.text import host_of, rule_id, value_text

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
CELL_LIMIT = 32_000
_TRUNCATED = " [truncated: see findings.json]"

FINDING_COLUMNS = (
    "fingerprint",
    "control_id",
    "rule",
    "title",
    "severity",
    "score",
    "status",
    "change_since_baseline",
    "host",
    "resource_kind",
    "resource",
    "scanner",
    "message",
    "observed",
    "expected",
    "remediation",
    *(f"ref_{k}" for k in FRAMEWORKS),
    "waiver_state",
    "waiver_justification",
    "waiver_approver",
    "waiver_expires",
    "observed_at",
)
REQUIREMENT_COLUMNS = (
    "framework",
    "requirement",
    "title",
    "section",
    "status",
    "manual",
    "in_requirement_list",
    "score_weight",
    "worst_severity",
    "findings_fail",
    "findings_error",
    "findings_waived",
    "findings_pass",
    "findings_not_applicable",
    "controls",
    "evidence",
)


def safe_cell(value: object) -> str | int | float:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    text = "" if value is None else str(value)
    if len(text) > CELL_LIMIT:
        text = text[: CELL_LIMIT - len(_TRUNCATED)] + _TRUNCATED
    if text.startswith(_FORMULA_STARTS):
        text = "'" + text
    return text


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return buffer.getvalue()


def _finding_row(report: Report, f: Finding) -> list[object]:
    waiver = f.waiver or {}
    change = report.diff.change_of(f.fingerprint) if report.diff else None
    return [
        f.fingerprint,
        f.control_id,
        rule_id(f) if f.rule else "",
        f.title,
        f.severity.value,
        f.score,
        f.status.value,
        change.value if change else "",
        host_of(f),
        f.resource.kind.value,
        f.resource.label(),
        f.scanner,
        f.message,
        value_text(f.evidence.observed),
        value_text(f.evidence.expected),
        f.remediation,
        *("; ".join(f.references.get(k, [])) for k in FRAMEWORKS),
        waiver.get("state", ""),
        waiver.get("justification", ""),
        waiver.get("approver", ""),
        waiver.get("expires", ""),
        format_timestamp(f.observed_at),
    ]


def render_findings_csv(report: Report) -> str:
    return _csv(FINDING_COLUMNS, (_finding_row(report, f) for f in report.findings))


def render_requirements_csv(report: Report) -> str:
    def rows() -> Iterable[list[object]]:
        for fr in report.readiness.frameworks:
            for r in fr.requirements:
                counts = r.finding_counts
                yield [
                    fr.key,
                    r.id,
                    r.title,
                    r.section,
                    r.status,
                    r.manual,
                    r.listed,
                    r.weight,
                    r.worst_severity.value if r.worst_severity else "",
                    counts.get("fail", 0),
                    counts.get("error", 0),
                    counts.get("waived", 0),
                    counts.get("pass", 0),
                    counts.get("not_applicable", 0),
                    " ".join(r.controls),
                    r.evidence_text(),
                ]

    return _csv(REQUIREMENT_COLUMNS, rows())

"""The HTML report: one self-contained file an auditor can open anywhere, offline.

No external asset at all: CSS and the filter script are inline, charts are SVG drawn in Python.
A Content-Security-Policy pins the inline style and script by hash and forbids every other
source, so even a scanned string that slipped past escaping could not load or run anything.
Everything from the findings goes through Jinja2 autoescaping.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from scanners.findings import Finding, Severity, format_timestamp
from scanners.report.charts import SEVERITY_COLOURS, STATUS_COLOURS, StackRow, bar_chart, line_chart, stacked_bars
from scanners.report.diff import Change
from scanners.report.model import Report
from scanners.report.readiness import WEIGHTS
from scanners.report.text import frameworks_of, host_of, references_text, rule_id, source_of, value_text

TEMPLATES = Path(__file__).with_name("templates")
_SEVERITIES = [s.value for s in sorted(Severity, key=lambda s: -s.rank)]
_REQUIREMENT_STATUSES = ["pass", "fail", "error", "waived", "not_applicable", "not_assessed", "manual"]


@dataclass(frozen=True, slots=True)
class _Assets:
    style: str
    script: str
    csp: str


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@cache
def _assets() -> _Assets:
    style = (TEMPLATES / "report.css.j2").read_text(encoding="utf-8")
    script = (TEMPLATES / "report.js.j2").read_text(encoding="utf-8")
    csp = (
        "default-src 'none'; "
        f"style-src 'sha256-{_sha256(style)}'; "
        f"script-src 'sha256-{_sha256(script)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return _Assets(style, script, csp)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["utc"] = _utc
    return environment


def _finding_view(report: Report, f: Finding) -> dict[str, Any]:
    change = report.diff.change_of(f.fingerprint) if report.diff else None
    return {
        "fingerprint": f.fingerprint,
        "severity": f.severity.value,
        "score": f.score,
        "status": f.status.value,
        "control": f.control_id,
        "rule": rule_id(f),
        "title": f.title,
        "resource": f.resource.label(),
        "source": source_of(f),
        "host": host_of(f),
        "frameworks": " ".join(frameworks_of(f)),
        "scanner": f.scanner,
        "message": f.message,
        "observed": value_text(f.evidence.observed),
        "expected": value_text(f.evidence.expected),
        "details": value_text(f.evidence.details) if f.evidence.details else "",
        "remediation": f.remediation,
        "references": references_text(f),
        "waiver": f.waiver,
        "change": change.value.replace("_", " ") if change else "",
        "observed_at": format_timestamp(f.observed_at),
    }


def _charts(report: Report) -> dict[str, Markup]:
    failing = Counter(f.severity.value for f in report.findings if f.is_problem)
    charts = {
        "severity": bar_chart(
            "Failing findings by severity", {s: failing.get(s, 0) for s in _SEVERITIES}, SEVERITY_COLOURS
        ),
        "frameworks": stacked_bars(
            "Requirements by status, per framework",
            [StackRow(fr.key, Counter(r.status for r in fr.requirements)) for fr in report.readiness.frameworks],
            {s: STATUS_COLOURS[s] for s in _REQUIREMENT_STATUSES},
        ),
    }
    if report.period and report.period.severity_series:
        series = report.period.severity_series
        charts["period"] = line_chart(
            "Failing findings by severity over the period",
            [p.time.strftime("%Y-%m-%d") for p in series],
            {s: [p.failing.get(s, 0) for p in series] for s in _SEVERITIES},
            SEVERITY_COLOURS,
        )
    return charts


def render_html(report: Report) -> str:
    assets = _assets()
    scan = report.document.scan
    findings = [_finding_view(report, f) for f in report.findings]
    framework_filter = [fr.key for fr in report.readiness.frameworks]
    context = {
        "report": report,
        "scan": scan,
        "started_at": format_timestamp(scan.started_at),
        "finished_at": format_timestamp(scan.finished_at) if scan.finished_at else "",
        "generated_at": format_timestamp(report.generated_at),
        "hosts": report.hosts(),
        "findings": findings,
        "problems": sum(1 for f in report.findings if f.is_problem),
        "status_counts": Counter(f.status.value for f in report.findings),
        "severities": _SEVERITIES,
        "statuses": ["fail", "error", "waived", "pass", "not_applicable"],
        "framework_filter": framework_filter,
        "charts": _charts(report),
        "readiness": report.readiness,
        "waivers": report.waivers,
        "diff": report.diff,
        "changes": [c for c in Change],
        "period": report.period,
        "weights": {s.value: w for s, w in WEIGHTS.items()},
        # Our own static files, pinned by hash in the CSP; nothing from a finding is in them.
        "style": Markup(assets.style),  # noqa: S704
        "script": Markup(assets.script),  # noqa: S704
        "csp": assets.csp,
    }
    return _environment().get_template("report.html.j2").render(context)

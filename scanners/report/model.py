"""The report: one findings document with waivers applied, judged against the frameworks.

Every export renders a :class:`Report`; :func:`build_report` is the one place that makes it, so
the HTML, CSV, SARIF, JUnit, OCSF and JSON files always agree with each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from scanners import __version__
from scanners.catalog import Catalog, default_catalog
from scanners.errors import InputError
from scanners.findings import Finding, Severity, Status, utcnow
from scanners.findings_file import FindingsDocument
from scanners.frameworks import Framework, default_frameworks
from scanners.period import PeriodSummary
from scanners.report.apply_waivers import WaiverOutcome, apply_waivers
from scanners.report.diff import ScanDiff, diff_findings
from scanners.report.readiness import Readiness, compute_readiness
from scanners.waivers import WaiverSet

# Status order in listings: what needs attention first.
_STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.WAIVED: 2, Status.PASS: 3, Status.NOT_APPLICABLE: 4}


@dataclass(frozen=True, slots=True)
class ControlInfo:
    """What the exports say about a control; from the catalog, or from the findings when the
    document was scanned with a catalog that had a control this one lacks."""

    id: str
    title: str
    rationale: str
    remediation: str
    severity: Severity
    references: Mapping[str, tuple[str, ...]]
    in_catalog: bool


@dataclass(frozen=True, slots=True)
class Report:
    document: FindingsDocument  # the input, as read
    findings: tuple[Finding, ...]  # waivers applied, sorted: status, severity, control, resource
    controls: Mapping[str, ControlInfo]  # every control id present in the findings
    readiness: Readiness
    waivers: WaiverOutcome
    diff: ScanDiff | None
    period: PeriodSummary | None
    today: date  # the day waiver expiry was judged on
    generated_at: datetime
    catalog_version: str  # of the catalog the scan used
    catalog_digest: str
    # The catalog this report took control titles, rationale and remediation from; it differs
    # from the scan's when a document is re-rendered by a newer preaudit.
    rendering_catalog: Mapping[str, Any] = field(default_factory=dict)
    tool_version: str = __version__

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_problem)

    def hosts(self) -> list[str]:
        named = {f.resource.host for f in self.findings if f.resource.host}
        return sorted(named | set(self.document.scan.hosts))


def _sort_key(finding: Finding) -> tuple[int, int, str, str, str]:
    return (
        _STATUS_ORDER[finding.status],
        -finding.severity.rank,
        finding.control_id,
        finding.resource.label(),
        finding.fingerprint,
    )


def control_infos(findings: Iterable[Finding], catalog: Catalog) -> dict[str, ControlInfo]:
    infos: dict[str, ControlInfo] = {}
    for finding in findings:
        if finding.control_id in infos:
            continue
        if finding.control_id in catalog:
            c = catalog.get(finding.control_id)
            infos[c.id] = ControlInfo(c.id, c.title, c.rationale, c.remediation, c.severity, c.references, True)
        else:
            infos[finding.control_id] = ControlInfo(
                id=finding.control_id,
                title=finding.title,
                rationale=(
                    f"Control {finding.control_id} is not in catalog {catalog.version}; "
                    "title and remediation come from the findings document."
                ),
                remediation=finding.remediation,
                severity=finding.severity,
                references={k: tuple(v) for k, v in finding.references.items()},
                in_catalog=False,
            )
    return dict(sorted(infos.items()))


def select_frameworks(keys: Iterable[str] | None, available: Mapping[str, Framework]) -> dict[str, Framework]:
    """The frameworks to score; every shipped one when ``keys`` is None."""
    if keys is None:
        return dict(available)
    chosen: dict[str, Framework] = {}
    for key in keys:
        if key not in available:
            raise InputError(f"unknown framework {key!r} (choose from {', '.join(available)})")
        chosen[key] = available[key]
    return chosen


def build_report(
    document: FindingsDocument,
    *,
    waivers: WaiverSet | None = None,
    baseline: FindingsDocument | None = None,
    period: PeriodSummary | None = None,
    today: date | None = None,
    frameworks: Iterable[str] | None = None,
    catalog: Catalog | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """Apply waivers (as of ``today``, UTC by default), diff against ``baseline`` and score readiness.

    The baseline is judged with the same waivers as of its own scan date, so a waiver that
    expired between the two scans shows as a regression.
    """
    today = today or datetime.now(UTC).date()
    catalog = catalog or default_catalog()
    chosen = select_frameworks(frameworks, default_frameworks())
    outcome = apply_waivers(document.findings, waivers, today)
    findings = tuple(sorted(outcome.findings, key=_sort_key))
    diff = None
    if baseline is not None:
        baseline_day = baseline.scan.started_at.astimezone(UTC).date()
        judged = apply_waivers(baseline.findings, waivers, baseline_day).findings
        diff = diff_findings(
            judged,
            findings,
            baseline_scan_id=baseline.scan.id,
            baseline_started_at=baseline.scan.started_at,
        )
    return Report(
        document=document,
        findings=findings,
        controls=control_infos(findings, catalog),
        readiness=compute_readiness(findings, chosen),
        waivers=outcome,
        diff=diff,
        period=period,
        today=today,
        generated_at=generated_at or utcnow(),
        catalog_version=str(document.catalog.get("version", "")),
        catalog_digest=str(document.catalog.get("digest", "")),
        rendering_catalog=catalog.metadata(),
    )

"""The CI gate: whether a report should make the pipeline fail, and why.

``--fail-on SEVERITY``: any failing finding (``fail`` or ``error``, never ``waived``) at or above
the severity. ``--fail-on-new``: the diff against the baseline has new failing findings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from scanners.errors import EXIT_FINDINGS, EXIT_OK
from scanners.findings import Finding, Severity
from scanners.report.diff import Change, ScanDiff


@dataclass(frozen=True, slots=True)
class GateResult:
    exit_code: int
    reasons: tuple[str, ...]


def _by_severity(findings: list[Finding]) -> str:
    counts = Counter(f.severity for f in findings)
    return ", ".join(f"{counts[s]} {s.value}" for s in sorted(counts, key=lambda s: -s.rank))


def evaluate_gate(
    findings: tuple[Finding, ...], diff: ScanDiff | None, *, fail_on: Severity | None, fail_on_new: bool
) -> GateResult:
    reasons: list[str] = []
    if fail_on is not None:
        over = [f for f in findings if f.is_problem and f.severity.rank >= fail_on.rank]
        if over:
            reasons.append(f"{len(over)} failing finding(s) at or above {fail_on.value}: {_by_severity(over)}")
    if fail_on_new and diff is not None:
        new = diff.of(Change.NEW)
        if new:
            reasons.append(f"{len(new)} new failing finding(s) since baseline scan {diff.baseline_scan_id}")
    return GateResult(EXIT_FINDINGS if reasons else EXIT_OK, tuple(reasons))

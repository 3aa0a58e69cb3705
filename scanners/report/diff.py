"""What changed between a baseline scan and this one, matched by finding fingerprint.

Each side puts a fingerprint in one state: failing (``fail`` or ``error``: something an auditor
must look at), waived, ok (``pass`` or ``not_applicable``) or absent. Then:

* new: absent in the baseline, failing now;
* fixed: failing or waived in the baseline, ok or absent now;
* regressed: ok or waived in the baseline, failing now (a waiver that expired lands here);
* unchanged: failing in both;
* newly waived: not waived in the baseline, waived now.

Other combinations (still passing, still waived, checks that disappeared) are only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from scanners.findings import Finding, Status


class Change(StrEnum):
    NEW = "new"
    FIXED = "fixed"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NEWLY_WAIVED = "newly_waived"


# Combinations that are counted but not listed.
STILL_PASSING = "still_passing"
STILL_WAIVED = "still_waived"
NO_LONGER_REPORTED = "no_longer_reported"
NEWLY_PASSING = "new_passing"

_FAILING, _WAIVED, _OK = "failing", "waived", "ok"
_RANK = {_OK: 0, _WAIVED: 1, _FAILING: 2}


def _state(finding: Finding) -> str:
    if finding.status in (Status.FAIL, Status.ERROR):
        return _FAILING
    if finding.status is Status.WAIVED:
        return _WAIVED
    return _OK


def _classify(before: str | None, after: str | None) -> str:
    if after == _FAILING:
        if before is None:
            return Change.NEW
        return Change.UNCHANGED if before == _FAILING else Change.REGRESSED
    if after == _WAIVED:
        return STILL_WAIVED if before == _WAIVED else Change.NEWLY_WAIVED
    if before in (_FAILING, _WAIVED):
        return Change.FIXED
    if before is None:
        return NEWLY_PASSING
    return STILL_PASSING if after == _OK else NO_LONGER_REPORTED


@dataclass(frozen=True, slots=True)
class DiffEntry:
    change: Change
    fingerprint: str
    control_id: str
    rule: str | None
    title: str
    severity: str
    resource: str
    baseline_status: str | None
    current_status: str | None


@dataclass(frozen=True, slots=True)
class ScanDiff:
    baseline_scan_id: str
    baseline_started_at: datetime
    entries: tuple[DiffEntry, ...]  # the listed changes, worst first
    counts: dict[str, int]  # every category, listed or not
    by_fingerprint: dict[str, Change]  # the listed change of each fingerprint

    def of(self, change: Change) -> list[DiffEntry]:
        return [e for e in self.entries if e.change is change]

    def change_of(self, fingerprint: str) -> Change | None:
        return self.by_fingerprint.get(fingerprint)


def _worst_by_fingerprint(findings: Iterable[Finding]) -> dict[str, Finding]:
    """One finding per fingerprint; should a scan report one twice, the worse state speaks."""
    chosen: dict[str, Finding] = {}
    for finding in findings:
        held = chosen.get(finding.fingerprint)
        if held is None or _RANK[_state(finding)] > _RANK[_state(held)]:
            chosen[finding.fingerprint] = finding
    return chosen


def diff_findings(
    baseline: Iterable[Finding], current: Iterable[Finding], *, baseline_scan_id: str, baseline_started_at: datetime
) -> ScanDiff:
    before = _worst_by_fingerprint(baseline)
    after = _worst_by_fingerprint(current)
    counts: Counter[str] = Counter({c.value: 0 for c in Change})
    entries: list[DiffEntry] = []
    for fingerprint in before.keys() | after.keys():
        old, new = before.get(fingerprint), after.get(fingerprint)
        category = _classify(_state(old) if old else None, _state(new) if new else None)
        counts[str(category)] += 1
        if not isinstance(category, Change):
            continue
        shown = new or old
        assert shown is not None  # the fingerprint came from one of the two sides
        entries.append(
            DiffEntry(
                change=category,
                fingerprint=fingerprint,
                control_id=shown.control_id,
                rule=shown.rule,
                title=shown.title,
                severity=shown.severity.value,
                resource=shown.resource.label(),
                baseline_status=old.status.value if old else None,
                current_status=new.status.value if new else None,
            )
        )
    severity_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    entries.sort(key=lambda e: (list(Change).index(e.change), severity_rank[e.severity], e.control_id, e.resource))
    return ScanDiff(
        baseline_scan_id=baseline_scan_id,
        baseline_started_at=baseline_started_at,
        entries=tuple(entries),
        counts=dict(counts),
        by_fingerprint={e.fingerprint: e.change for e in entries},
    )

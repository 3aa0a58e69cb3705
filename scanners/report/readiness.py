"""Readiness per framework and overall: a score an auditor can recompute by hand, and its coverage.

The rule (README.md, "Readiness score"):

* A requirement's status comes from the findings that reference it, by the one roll-up rule of
  ``scanners.compliance`` (fail > error > waived > pass); no finding means ``not_assessed``.
  A ``manual`` requirement (no scan can decide it) can be failed by evidence but never passed:
  without failing evidence its status is ``manual``.
* A passed requirement counts 1 in the numerator and the denominator. A failed requirement, and
  one whose check errored, adds the weight of its worst failing finding's severity to the
  denominator only: critical 4, high 3, medium 2, low 1, info 1.
* score = floor(100 x passed / (passed + failure weights)). Waived, not applicable, manual and
  not assessed requirements are outside the score and reported beside it; coverage is the share
  of the listed, non-manual requirements that any finding assessed.
* The overall score applies the same formula to the requirements of all frameworks together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scanners.compliance import RequirementStatus, requirement_statuses
from scanners.findings import Finding, Severity, Status
from scanners.frameworks import Framework

WEIGHTS: Mapping[Severity, int] = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 1,
}
MANUAL = "manual"
FAILING = frozenset({RequirementStatus.FAIL.value, RequirementStatus.ERROR.value})
# Statuses that mean some finding looked at the requirement.
ASSESSED = FAILING | {
    RequirementStatus.PASS.value,
    RequirementStatus.WAIVED.value,
    RequirementStatus.NOT_APPLICABLE.value,
}
# How many failing resources a requirement row names before summarising the rest.
FAILING_SHOWN = 50


@dataclass(frozen=True, slots=True)
class RequirementResult:
    framework: str
    id: str
    title: str
    section: str
    manual: bool
    listed: bool  # False: a finding references an id the shipped list does not have
    status: str  # a RequirementStatus value or MANUAL
    worst_severity: Severity | None  # of the failing (fail or error) findings behind it
    finding_counts: Mapping[str, int] = field(default_factory=dict)  # finding status -> count
    controls: tuple[str, ...] = ()  # control ids whose findings reference it
    failing: tuple[str, ...] = ()  # "CONTROL resource" of failing findings, at most FAILING_SHOWN
    failing_total: int = 0

    @property
    def weight(self) -> int:
        """What the requirement adds to the denominator of the score; 0 when it is not scored."""
        if self.status == RequirementStatus.PASS.value:
            return 1
        if self.status in FAILING:
            return WEIGHTS[self.worst_severity or Severity.HIGH]
        return 0

    def evidence_text(self) -> str:
        """One line an auditor can check the status against."""
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.finding_counts.items()))
        if not counts:
            return ""
        text = f"{counts} (controls {', '.join(self.controls)})"
        if self.failing:
            more = self.failing_total - len(self.failing)
            text += "; failing: " + "; ".join(self.failing) + (f"; and {more} more" if more > 0 else "")
        return text


@dataclass(frozen=True, slots=True)
class Score:
    passed: int = 0
    failed: int = 0  # requirements whose status is fail
    errors: int = 0  # requirements whose status is error
    failure_weight: int = 0
    waived: int = 0
    not_applicable: int = 0
    not_assessed: int = 0
    manual: int = 0
    listed_automatable: int = 0  # listed requirements that are not manual
    assessed_automatable: int = 0  # of those, how many a finding assessed

    @property
    def value(self) -> int | None:
        """0-100, or None when nothing scored (no evidence is not a score of 100)."""
        denominator = self.passed + self.failure_weight
        return (100 * self.passed) // denominator if denominator else None

    @property
    def coverage(self) -> float:
        if not self.listed_automatable:
            return 0.0
        return self.assessed_automatable / self.listed_automatable

    def label(self) -> str:
        return "n/a" if self.value is None else f"{self.value}/100"

    def __add__(self, other: Score) -> Score:
        return Score(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.value,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "failure_weight": self.failure_weight,
            "waived": self.waived,
            "not_applicable": self.not_applicable,
            "not_assessed": self.not_assessed,
            "manual": self.manual,
            "coverage": round(self.coverage, 4),
            "listed_automatable": self.listed_automatable,
            "assessed_automatable": self.assessed_automatable,
        }


def _fields(score: Score) -> tuple[int, ...]:
    return (
        score.passed,
        score.failed,
        score.errors,
        score.failure_weight,
        score.waived,
        score.not_applicable,
        score.not_assessed,
        score.manual,
        score.listed_automatable,
        score.assessed_automatable,
    )


def score_of(results: Iterable[RequirementResult]) -> Score:
    statuses: Counter[str] = Counter()
    weight = listed_auto = assessed_auto = 0
    for r in results:
        statuses[r.status] += 1
        if r.status in FAILING:
            weight += r.weight
        if r.listed and not r.manual:
            listed_auto += 1
            assessed_auto += r.status in ASSESSED
    return Score(
        passed=statuses[RequirementStatus.PASS.value],
        failed=statuses[RequirementStatus.FAIL.value],
        errors=statuses[RequirementStatus.ERROR.value],
        failure_weight=weight,
        waived=statuses[RequirementStatus.WAIVED.value],
        not_applicable=statuses[RequirementStatus.NOT_APPLICABLE.value],
        not_assessed=statuses[RequirementStatus.NOT_ASSESSED.value],
        manual=statuses[MANUAL],
        listed_automatable=listed_auto,
        assessed_automatable=assessed_auto,
    )


@dataclass(frozen=True, slots=True)
class FrameworkReadiness:
    key: str
    name: str
    version: str
    requirements: tuple[RequirementResult, ...]
    score: Score

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip()


@dataclass(frozen=True, slots=True)
class Readiness:
    frameworks: tuple[FrameworkReadiness, ...]
    overall: Score

    def get(self, key: str) -> FrameworkReadiness | None:
        return next((f for f in self.frameworks if f.key == key), None)


@dataclass(slots=True)
class _Evidence:
    counts: Counter[str] = field(default_factory=Counter)
    controls: set[str] = field(default_factory=set)
    failing: list[str] = field(default_factory=list)
    failing_total: int = 0
    worst: Severity | None = None


def _gather(findings: Iterable[Finding], keys: set[str]) -> dict[tuple[str, str], _Evidence]:
    evidence: dict[tuple[str, str], _Evidence] = {}
    for finding in findings:
        failing = finding.status in (Status.FAIL, Status.ERROR)
        for framework, ids in finding.references.items():
            if framework not in keys:
                continue
            for rid in ids:
                e = evidence.setdefault((framework, rid), _Evidence())
                e.counts[finding.status.value] += 1
                e.controls.add(finding.control_id)
                if failing:
                    e.failing_total += 1
                    if len(e.failing) < FAILING_SHOWN:
                        e.failing.append(f"{finding.control_id} {finding.resource.label()}")
                    if e.worst is None or finding.severity.rank > e.worst.rank:
                        e.worst = finding.severity
    return evidence


def _status(rolled_up: RequirementStatus | None, manual: bool) -> str:
    if rolled_up is None:
        return MANUAL if manual else RequirementStatus.NOT_ASSESSED.value
    if manual and rolled_up.value not in FAILING:
        return MANUAL
    return rolled_up.value


def compute_readiness(findings: Iterable[Finding], frameworks: Mapping[str, Framework]) -> Readiness:
    """Requirement statuses and scores of each framework, plus the pooled overall score."""
    findings = list(findings)
    rolled = requirement_statuses(findings)
    evidence = _gather(findings, set(frameworks))
    result: list[FrameworkReadiness] = []
    for key, framework in frameworks.items():
        rows: list[RequirementResult] = []
        listed = {r.id for r in framework}
        entries = [(r.id, r.title, r.section, r.manual, True) for r in framework]
        # Ids the findings reference that this list lacks (another catalog version, or a typo)
        # are shown and scored rather than silently dropped.
        extra = sorted(rid for fw, rid in rolled if fw == key and rid not in listed)
        entries += [(rid, "(not in the requirement list shipped with this version)", "", False, False) for rid in extra]
        for rid, title, section, manual, is_listed in entries:
            e = evidence.get((key, rid), _Evidence())
            rows.append(
                RequirementResult(
                    framework=key,
                    id=rid,
                    title=title,
                    section=section,
                    manual=manual,
                    listed=is_listed,
                    status=_status(rolled.get((key, rid)), manual),
                    worst_severity=e.worst,
                    finding_counts=dict(e.counts),
                    controls=tuple(sorted(e.controls)),
                    failing=tuple(e.failing),
                    failing_total=e.failing_total,
                )
            )
        result.append(FrameworkReadiness(key, framework.name, framework.version, tuple(rows), score_of(rows)))
    overall = Score()
    for fr in result:
        overall = overall + fr.score
    return Readiness(frameworks=tuple(result), overall=overall)

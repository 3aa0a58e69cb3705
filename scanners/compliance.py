"""How findings roll up into the status of a framework requirement (one rule for every consumer).

A requirement (e.g. SOC 2 CC6.1, ISO 27001 A.8.5) is assessed by the findings whose references
name it. Its status is the worst of theirs, in this order: fail > error > waived > pass;
findings that are not applicable do not count. A requirement no finding names is "not
assessed" (the report lists it as such and never counts it as passed).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from scanners.catalog import FRAMEWORKS
from scanners.findings import Finding, Status


class RequirementStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    ERROR = "error"
    WAIVED = "waived"
    NOT_APPLICABLE = "not_applicable"
    NOT_ASSESSED = "not_assessed"


_PRECEDENCE = {
    Status.FAIL: 4,
    Status.ERROR: 3,
    Status.WAIVED: 2,
    Status.PASS: 1,
    Status.NOT_APPLICABLE: 0,
}
_RESULT = {
    4: RequirementStatus.FAIL,
    3: RequirementStatus.ERROR,
    2: RequirementStatus.WAIVED,
    1: RequirementStatus.PASS,
    0: RequirementStatus.NOT_APPLICABLE,
}

RequirementKey = tuple[str, str]  # (framework, requirement id)


def requirement_statuses(findings: Iterable[Finding]) -> dict[RequirementKey, RequirementStatus]:
    """Status of every framework requirement that at least one finding references."""
    worst: dict[RequirementKey, int] = {}
    for finding in findings:
        rank = _PRECEDENCE[finding.status]
        for framework, ids in finding.references.items():
            if framework not in FRAMEWORKS:
                continue
            for requirement in ids:
                key = (framework, requirement)
                if rank > worst.get(key, -1):
                    worst[key] = rank
    return {key: _RESULT[rank] for key, rank in worst.items()}

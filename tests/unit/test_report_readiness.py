"""The readiness score, checked against cases computed by hand from the README formula."""

from __future__ import annotations

from scanners.findings import Finding, Resource, ResourceKind, Severity, Status
from scanners.frameworks import Framework, parse_framework
from scanners.report.readiness import MANUAL, compute_readiness


def framework(key: str, *requirements: tuple[str, bool]) -> Framework:
    return parse_framework(
        {
            "framework": key,
            "name": key,
            "sections": [{"title": "S", "requirements": [{"id": i, "title": i, "manual": m} for i, m in requirements]}],
        },
        f"{key}.yml",
    )


def finding(n: int, status: Status, severity: Severity, **references: list[str]) -> Finding:
    return Finding(
        control_id=f"T-{n:03d}",
        title=f"check {n}",
        severity=severity,
        status=status,
        resource=Resource(ResourceKind.HOST, host=f"h{n}"),
        scanner="test",
        references={k.replace("_", "-"): v for k, v in references.items()},
    )


SOC2 = framework(
    "soc2",
    ("R1", False),
    ("R2", False),
    ("R3", False),
    ("R4", False),
    ("R5", True),
    ("R6", False),
    ("R7", True),
)
ISO = framework("iso27001", ("X1", False), ("X2", False), ("X3", True))
FINDINGS = [
    finding(1, Status.PASS, Severity.HIGH, soc2=["R1"], iso27001=["X1"]),
    finding(2, Status.FAIL, Severity.HIGH, soc2=["R2"]),
    finding(3, Status.PASS, Severity.HIGH, soc2=["R2"]),
    finding(4, Status.FAIL, Severity.CRITICAL, soc2=["R3"]),
    finding(5, Status.FAIL, Severity.LOW, soc2=["R3"]),
    finding(6, Status.WAIVED, Severity.MEDIUM, soc2=["R4"]),
    finding(7, Status.PASS, Severity.MEDIUM, soc2=["R5"]),
    finding(8, Status.FAIL, Severity.MEDIUM, soc2=["R7"]),
    finding(9, Status.PASS, Severity.LOW, soc2=["R99"]),
    finding(10, Status.ERROR, Severity.HIGH, iso27001=["X2"]),
    finding(11, Status.PASS, Severity.HIGH, nist_800_53=["AC-6"]),  # not a scored framework
]


def test_hand_computed_scores_statuses_and_coverage() -> None:
    readiness = compute_readiness(FINDINGS, {"soc2": SOC2, "iso27001": ISO})
    soc2 = readiness.get("soc2")
    assert soc2 is not None
    statuses = {r.id: r.status for r in soc2.requirements}
    assert statuses == {
        "R1": "pass",
        "R2": "fail",  # one failure outweighs any number of passes
        "R3": "fail",
        "R4": "waived",
        "R5": MANUAL,  # passing evidence never passes a manual requirement
        "R6": "not_assessed",
        "R7": "fail",  # but failing evidence does fail it
        "R99": "pass",  # referenced though not listed: shown and scored, never dropped
    }
    weights = {r.id: r.weight for r in soc2.requirements}
    assert weights == {"R1": 1, "R2": 3, "R3": 4, "R4": 0, "R5": 0, "R6": 0, "R7": 2, "R99": 1}
    # passed = R1 + R99 = 2; failure weights = 3 (high) + 4 (critical) + 2 (medium) = 9
    # score = floor(100 * 2 / (2 + 9)) = floor(18.18) = 18
    assert soc2.score.value == 18
    assert (soc2.score.passed, soc2.score.failed, soc2.score.failure_weight) == (2, 3, 9)
    assert (soc2.score.waived, soc2.score.manual, soc2.score.not_assessed) == (1, 1, 1)
    # coverage: listed non-manual R1, R2, R3, R4, R6 = 5; assessed R1-R4 = 4
    assert soc2.score.coverage == 0.8
    unlisted = [r for r in soc2.requirements if not r.listed]
    assert [r.id for r in unlisted] == ["R99"]

    iso = readiness.get("iso27001")
    assert iso is not None
    # X1 pass, X2 error (high, weight 3), X3 manual: floor(100 * 1 / 4) = 25
    assert {r.id: r.status for r in iso.requirements} == {"X1": "pass", "X2": "error", "X3": MANUAL}
    assert iso.score.value == 25
    # overall pools the frameworks: passed 3, weights 9 + 3 = 12: floor(300 / 15) = 20
    assert readiness.overall.value == 20
    assert readiness.overall.label() == "20/100"


def test_evidence_names_the_failing_resources() -> None:
    soc2 = compute_readiness(FINDINGS, {"soc2": SOC2}).get("soc2")
    assert soc2 is not None
    r3 = next(r for r in soc2.requirements if r.id == "R3")
    assert r3.worst_severity is Severity.CRITICAL
    assert r3.finding_counts == {"fail": 2}
    assert "failing: T-004 h4; T-005 h5" in r3.evidence_text()


def test_no_evidence_is_no_score_not_a_perfect_one() -> None:
    readiness = compute_readiness([], {"soc2": SOC2})
    assert readiness.overall.value is None
    assert readiness.overall.label() == "n/a"
    assert readiness.overall.coverage == 0.0


def test_all_passing_scores_100_and_info_failures_still_count() -> None:
    fw = framework("soc2", ("A", False), ("B", False), ("C", False), ("D", False))
    passing = [finding(i, Status.PASS, Severity.HIGH, soc2=[r]) for i, r in enumerate("ABCD")]
    assert compute_readiness(passing, {"soc2": fw}).overall.value == 100
    # one info failure weighs 1: floor(100 * 3 / 4) = 75
    mixed = [*passing[:3], finding(9, Status.FAIL, Severity.INFO, soc2=["D"])]
    assert compute_readiness(mixed, {"soc2": fw}).overall.value == 75
    # the same failure at critical weighs 4: floor(100 * 3 / 7) = 42
    critical = [*passing[:3], finding(9, Status.FAIL, Severity.CRITICAL, soc2=["D"])]
    assert compute_readiness(critical, {"soc2": fw}).overall.value == 42


def test_not_applicable_is_assessed_but_not_scored() -> None:
    fw = framework("soc2", ("A", False), ("B", False))
    findings = [
        finding(1, Status.PASS, Severity.HIGH, soc2=["A"]),
        finding(2, Status.NOT_APPLICABLE, Severity.HIGH, soc2=["B"]),
    ]
    score = compute_readiness(findings, {"soc2": fw}).overall
    assert score.value == 100 and score.not_applicable == 1 and score.coverage == 1.0

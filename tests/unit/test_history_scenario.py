"""The issue's scenario over the history: before hardening, after, after a deliberate regression, after the fix.

Scans of SSH-002 (password authentication disabled) on sim-1 and sim-2, with SSH-001 passing
throughout; the auditor's answers must come out exactly: intervals, hours to fix, the
regression flag and the period summary. Runs on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from scanners.findings import Status
from scanners.history.intervals import Outcome
from scanners.history.period import build_period_summary, period_to_dict
from scanners.history.queries import control_timelines, finding_life, list_scans
from scanners.history.recording import RecordResult, record_scan
from scanners.history.store import HistoryStore, open_store
from tests.history_support import FAIL, PASS, at, host_finding, scan

# 2026-06-01 08:00, 10:00; 2026-06-02 10:00; 2026-06-03 00:00 (UTC)
BEFORE, AFTER, REGRESSED, FIXED = at(0), at(2), at(26), at(40)


@pytest.fixture
def scenario(store_url: str) -> Iterator[tuple[HistoryStore, list[RecordResult]]]:
    def states(sim1: Status, sim2: Status) -> dict[tuple[str, str], Status]:
        return {
            ("SSH-001", "sim-1"): PASS,
            ("SSH-001", "sim-2"): PASS,
            ("SSH-002", "sim-1"): sim1,
            ("SSH-002", "sim-2"): sim2,
        }

    with open_store(store_url) as store:
        results = [
            record_scan(store, scan("before", BEFORE, states(FAIL, FAIL))),
            record_scan(store, scan("hardened", AFTER, states(PASS, PASS))),
            record_scan(store, scan("regressed", REGRESSED, states(FAIL, PASS))),
            record_scan(store, scan("fixed", FIXED, states(PASS, PASS))),
        ]
        yield store, results


def test_only_the_deliberate_regression_is_flagged(scenario: tuple[HistoryStore, list[RecordResult]]) -> None:
    store, results = scenario
    assert [len(r.regressions) for r in results] == [0, 0, 1, 0]
    [hit] = results[2].regressions
    assert (hit.control_id, hit.resource, hit.host, hit.previous_scan, hit.previous_time) == (
        "SSH-002",
        "sim-1",
        "sim-1",
        "hardened",
        AFTER,
    )
    assert [s.regressions for s in list_scans(store)] == [0, 0, 1, 0]
    assert [s.failing for s in list_scans(store)] == [2, 0, 1, 0]


def test_control_history_answers_the_auditor(scenario: tuple[HistoryStore, list[RecordResult]]) -> None:
    store, _ = scenario
    sim1, sim2 = control_timelines(store, "SSH-002")
    assert (sim1.resource, sim1.current, sim2.resource, sim2.current) == ("sim-1", Outcome.PASS, "sim-2", Outcome.PASS)
    rows = [
        (
            i.outcome,
            i.first.scan_id,
            i.last.scan_id,
            i.ended_by.scan_id if i.ended_by else None,
            i.hours_to_fix,
            i.regression,
        )
        for i in sim1.intervals
    ]
    assert rows == [
        (Outcome.FAIL, "before", "before", "hardened", 2.0, False),
        (Outcome.PASS, "hardened", "hardened", "regressed", None, False),
        (Outcome.FAIL, "regressed", "regressed", "fixed", 14.0, True),
        (Outcome.PASS, "fixed", "fixed", None, None, False),
    ]
    # sim-2 passed continuously from the hardening on, proven by three scans.
    assert [(i.outcome, [o.scan.scan_id for o in i.observations]) for i in sim2.intervals] == [
        (Outcome.FAIL, ["before"]),
        (Outcome.PASS, ["hardened", "regressed", "fixed"]),
    ]
    assert sim2.intervals[1].first.time == AFTER and sim2.intervals[1].ended_by is None


def test_since_and_host_pattern_narrow_the_answer(scenario: tuple[HistoryStore, list[RecordResult]]) -> None:
    store, _ = scenario
    [sim1] = control_timelines(store, "SSH-002", since=at(20), host_pattern="sim-1")
    # The passing run that the regression ended still held at the start of the window.
    assert [(i.outcome, i.first.scan_id) for i in sim1.intervals] == [
        (Outcome.PASS, "hardened"),
        (Outcome.FAIL, "regressed"),
        (Outcome.PASS, "fixed"),
    ]
    assert control_timelines(store, "SSH-002", host_pattern="db-*") == []
    assert [t.resource for t in control_timelines(store, "SSH-002", host_pattern="sim-[12]")] == ["sim-1", "sim-2"]


def test_a_findings_life_first_seen_last_seen_and_each_change(
    scenario: tuple[HistoryStore, list[RecordResult]],
) -> None:
    store, _ = scenario
    fingerprint = host_finding("SSH-002", "sim-1", FAIL, BEFORE).fingerprint
    life = finding_life(store, fingerprint[:12])
    assert (life.fingerprint, life.resource, life.scans_seen, life.current) == (fingerprint, "sim-1", 4, "pass")
    assert (life.first_seen.scan_id, life.last_seen.scan_id) == ("before", "fixed")
    assert [(c.scan.scan_id, c.previous, c.status) for c in life.changes] == [
        ("before", None, "fail"),
        ("hardened", "fail", "pass"),
        ("regressed", "pass", "fail"),
        ("fixed", "fail", "pass"),
    ]


def test_a_finding_no_longer_reported_where_the_scan_looked_is_absent(store_url: str) -> None:
    with open_store(store_url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): FAIL}))
        record_scan(store, scan("s2", at(1), {("SSH-001", "sim-2"): PASS}))  # another host: says nothing
        record_scan(store, scan("s3", at(2), {("SSH-001", "sim-1"): PASS}))  # sim-1 scanned, SSH-002 gone
        life = finding_life(store, host_finding("SSH-002", "sim-1", FAIL, at(0)).fingerprint)
    assert [(c.scan.scan_id, c.status) for c in life.changes] == [("s1", "fail"), ("s3", "absent")]
    assert life.current == "absent"


def test_period_summary_over_the_scenario(scenario: tuple[HistoryStore, list[RecordResult]]) -> None:
    store, _ = scenario
    summary = build_period_summary(store, date(2026, 6, 1), date(2026, 6, 30))
    assert summary.scans == 4
    shares = {(r.framework, r.requirement): (r.scans_passed, r.scans_assessed) for r in summary.requirements}
    # CC6.1 is served by SSH-001 and SSH-002: it passed only where SSH-002 passed on both hosts.
    assert shares[("soc2", "CC6.1")] == (2, 4)
    # CC6.3 is served by SSH-001 alone, which always passed.
    assert shares[("soc2", "CC6.3")] == (4, 4)
    assert shares[("iso27001", "A.5.17")] == (2, 4)
    [regression] = summary.regressions
    assert (regression.control_id, regression.resource, regression.failed_scan, regression.fixed_scan) == (
        "SSH-002",
        "sim-1",
        "regressed",
        "fixed",
    )
    assert regression.hours_to_fix == 14.0
    assert [(p.scan_id, p.failing["high"], sum(p.failing.values())) for p in summary.severity_series] == [
        ("before", 2, 2),
        ("hardened", 0, 0),
        ("regressed", 1, 1),
        ("fixed", 0, 0),
    ]
    data = period_to_dict(summary)
    assert data["regressions"][0]["hours_to_fix"] == 14.0
    assert data["regressions"][0]["failed_at"] == "2026-06-02T10:00:00Z"
    assert {
        "framework": "soc2",
        "requirement": "CC6.1",
        "scans_assessed": 4,
        "scans_passed": 2,
        "share_passed": 0.5,
    } in data["requirements"]


def test_period_bounds_are_whole_utc_days(scenario: tuple[HistoryStore, list[RecordResult]]) -> None:
    store, _ = scenario
    # The regression began on 2026-06-02 and was fixed the next day: a period of the 3rd only
    # sees the fix, not the regression.
    june_2 = build_period_summary(store, date(2026, 6, 2), date(2026, 6, 2))
    assert (june_2.scans, len(june_2.regressions)) == (1, 1)
    assert june_2.regressions[0].fixed_scan == "fixed"  # fixed after the period: still reported
    june_3 = build_period_summary(store, date(2026, 6, 3), date(2026, 6, 3))
    assert (june_3.scans, june_3.regressions) == (1, [])
    assert build_period_summary(store, date(2026, 7, 1), date(2026, 7, 31)).scans == 0

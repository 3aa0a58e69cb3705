"""Pass/fail intervals of a control on a resource: boundaries, time to fix, regressions, unknown scans."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scanners.findings import Status
from scanners.history.intervals import Observation, Outcome, ScanRef, build_intervals, fold_statuses, overlaps
from tests.history_support import ERROR, FAIL, NA, PASS, WAIVED, at


def _obs(*statuses: Status) -> list[Observation]:
    """One observation per status, scans s1, s2, ... ten hours apart."""
    return [Observation(ScanRef(at(10 * i), f"s{i + 1}"), status) for i, status in enumerate(statuses)]


def _shape(statuses: list[Status]) -> list[tuple[str, list[str], str | None, float | None, bool]]:
    return [
        (
            i.outcome.value,
            [o.scan.scan_id for o in i.observations],
            i.ended_by.scan_id if i.ended_by else None,
            i.hours_to_fix,
            i.regression,
        )
        for i in build_intervals(_obs(*statuses))
    ]


def test_before_hardening_after_regression_fix() -> None:
    assert _shape([FAIL, PASS, PASS, FAIL, FAIL, PASS]) == [
        ("fail", ["s1"], "s2", 10.0, False),  # failing from the start: fixed, but not a regression
        ("pass", ["s2", "s3"], "s4", None, False),
        ("fail", ["s4", "s5"], "s6", 20.0, True),
        ("pass", ["s6"], None, None, False),
    ]


def test_a_failure_lasts_through_unknown_scans_until_a_pass_proves_the_fix() -> None:
    assert _shape([PASS, FAIL, ERROR, NA, PASS]) == [
        ("pass", ["s1"], "s2", None, False),
        ("fail", ["s2", "s3", "s4"], "s5", 30.0, True),
        ("pass", ["s5"], None, None, False),
    ]


def test_an_unknown_scan_breaks_a_passing_run_and_does_not_hide_a_regression() -> None:
    assert _shape([PASS, ERROR, FAIL]) == [
        ("pass", ["s1"], "s2", None, False),
        ("unknown", ["s2"], "s3", None, False),
        ("fail", ["s3"], None, None, True),  # still failing: no time to fix yet
    ]


def test_waived_counts_as_passing_and_unknown_at_the_start_is_no_regression() -> None:
    assert _shape([NA, FAIL, WAIVED, PASS]) == [
        ("unknown", ["s1"], "s2", None, False),
        ("fail", ["s2"], "s3", 10.0, False),
        ("pass", ["s3", "s4"], None, None, False),
    ]


def test_observations_are_ordered_by_time_then_scan_id() -> None:
    observations = list(reversed(_obs(PASS, FAIL, PASS)))
    intervals = build_intervals(observations)
    assert [i.first.scan_id for i in intervals] == ["s1", "s2", "s3"]
    same_time = [Observation(ScanRef(at(0), "b"), FAIL), Observation(ScanRef(at(0), "a"), PASS)]
    assert [i.outcome for i in build_intervals(same_time)] == [Outcome.PASS, Outcome.FAIL]


@pytest.mark.parametrize(
    ("statuses", "folded"),
    [
        (["pass", "fail", "error"], Status.FAIL),
        (["pass", "waived"], Status.WAIVED),
        (["pass", "error"], Status.PASS),
        (["error", "not_applicable"], Status.ERROR),
        (["not_applicable"], Status.NOT_APPLICABLE),
    ],
)
def test_fold_statuses_of_one_control_on_one_resource(statuses: list[str], folded: Status) -> None:
    assert fold_statuses(statuses) is folded


def test_overlaps_keeps_intervals_that_still_held_on_or_after_since() -> None:
    closed, still_open = build_intervals(_obs(FAIL, PASS))  # fail at 0 h, fixed at 10 h
    assert overlaps(closed, at(5))
    assert not overlaps(closed, at(10))
    assert not overlaps(closed, at(10) + timedelta(seconds=1))
    assert overlaps(still_open, at(1000))

"""Pass and fail intervals of one control on one resource, from its scans in time order.

This answers the auditor's question: continuously passing from when to when, each interval
it failed and how long it took to fix, and the scans that prove each boundary.

- The status of a control on a resource in a scan folds the statuses of its findings there:
  fail if any fails, else waived or pass if any is, else error, else not applicable. Waived and
  pass count as passing; error and not applicable as unknown (the scan proves nothing either way).
- A passing interval is a run of consecutive passing scans; an unknown scan ends it, because
  it no longer proves the control operated.
- A failing interval starts at the first failing scan and lasts until the first passing scan
  after it (unknown scans in between do not fix anything). That passing scan ends it; the
  time to fix is from the failing scan's start to the fixing scan's start.
- A failing interval that follows a pass (with only unknown scans between) is a regression;
  the same rule as the drift check at record time (scanners.history.drift).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from scanners.findings import Status


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    UNKNOWN = "unknown"


_FOLD_ORDER = (Status.FAIL, Status.WAIVED, Status.PASS, Status.ERROR, Status.NOT_APPLICABLE)
_OUTCOME = {
    Status.FAIL: Outcome.FAIL,
    Status.WAIVED: Outcome.PASS,
    Status.PASS: Outcome.PASS,
    Status.ERROR: Outcome.UNKNOWN,
    Status.NOT_APPLICABLE: Outcome.UNKNOWN,
}


def fold_statuses(statuses: Iterable[str]) -> Status:
    """The status of a control on a resource in one scan, from the statuses of its findings there."""
    present = {Status(s) for s in statuses}
    for status in _FOLD_ORDER:
        if status in present:
            return status
    raise ValueError("a control observed in a scan has at least one finding")


@dataclass(frozen=True, slots=True, order=True)
class ScanRef:
    time: datetime
    scan_id: str


@dataclass(frozen=True, slots=True)
class Observation:
    scan: ScanRef
    status: Status

    @property
    def outcome(self) -> Outcome:
        return _OUTCOME[self.status]


@dataclass(frozen=True, slots=True)
class Interval:
    outcome: Outcome
    observations: tuple[Observation, ...]  # every scan in the interval, oldest first: the evidence
    ended_by: ScanRef | None  # first scan of the next interval (for a failure: the scan that proved the fix)
    regression: bool = False  # a failure that follows a pass

    @property
    def first(self) -> ScanRef:
        return self.observations[0].scan

    @property
    def last(self) -> ScanRef:
        return self.observations[-1].scan

    @property
    def hours_to_fix(self) -> float | None:
        if self.outcome is not Outcome.FAIL or self.ended_by is None:
            return None
        return (self.ended_by.time - self.first.time).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything the history says about one control on one resource."""

    control_id: str
    resource: str
    host: str | None
    intervals: tuple[Interval, ...]

    @property
    def current(self) -> Outcome:
        return self.intervals[-1].outcome

    @property
    def passing(self) -> list[Interval]:
        return [i for i in self.intervals if i.outcome is Outcome.PASS]

    @property
    def failures(self) -> list[Interval]:
        return [i for i in self.intervals if i.outcome is Outcome.FAIL]

    @property
    def regressions(self) -> list[Interval]:
        return [i for i in self.intervals if i.regression]


def build_intervals(observations: Sequence[Observation]) -> list[Interval]:
    """Cut the observations of one control on one resource into intervals (see the module doc)."""
    ordered = sorted(observations, key=lambda o: o.scan)
    intervals: list[Interval] = []
    run: list[Observation] = []
    regression = False
    last_assessed: Outcome | None = None
    for obs in ordered:
        if run:
            current = run[0].outcome
            # A failure lasts until a pass proves it fixed; any other scan continues the run.
            if obs.outcome is current or (current is Outcome.FAIL and obs.outcome is not Outcome.PASS):
                run.append(obs)
            else:
                intervals.append(Interval(current, tuple(run), obs.scan, regression))
                run = []
        if not run:
            run = [obs]
            regression = obs.outcome is Outcome.FAIL and last_assessed is Outcome.PASS
        if obs.outcome is not Outcome.UNKNOWN:
            last_assessed = obs.outcome
    if run:
        intervals.append(Interval(run[0].outcome, tuple(run), None, regression))
    return intervals


def overlaps(interval: Interval, since: datetime) -> bool:
    """True when the interval still held at or after ``since`` (a still-open interval always does)."""
    return interval.ended_by is None or interval.ended_by.time > since or interval.last.time >= since

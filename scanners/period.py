"""The "over the audit period" data: produced from the history store, rendered by the report.

SOC 2 Type II asks whether controls operated over a period. This is the shape both sides
agree on: the history store fills it (scanners/history), the report renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class Regression:
    """A control that passed on a resource, then failed: when, and when (if ever) it was fixed."""

    control_id: str
    resource: str  # the resource label, e.g. "sim-1" or "sim-1:/etc/ssh/sshd_config"
    host: str | None
    failed_at: datetime  # time of the first scan in which it failed again
    failed_scan: str
    fixed_at: datetime | None  # time of the first later scan in which it passed, None if still failing
    fixed_scan: str | None

    @property
    def hours_to_fix(self) -> float | None:
        if self.fixed_at is None:
            return None
        return (self.fixed_at - self.failed_at).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class RequirementPeriod:
    framework: str  # a key of scanners.catalog.FRAMEWORKS
    requirement: str  # e.g. "CC6.1"
    scans_assessed: int  # scans in which a finding referenced it
    scans_passed: int  # of those, scans in which its status (scanners.compliance) was pass or waived

    @property
    def share_passed(self) -> float:
        return self.scans_passed / self.scans_assessed if self.scans_assessed else 0.0


@dataclass(frozen=True, slots=True)
class SeverityPoint:
    scan_id: str
    time: datetime
    failing: dict[str, int]  # severity value -> number of failing (not waived) findings


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    start: date
    end: date
    scans: int
    requirements: list[RequirementPeriod] = field(default_factory=list)
    regressions: list[Regression] = field(default_factory=list)
    severity_series: list[SeverityPoint] = field(default_factory=list)

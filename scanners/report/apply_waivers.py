"""Apply waivers to findings: an active waiver turns a failure into ``waived``, an expired one does not.

A failing finding matched by an active waiver becomes ``waived`` and carries the waiver (its
justification, approver and expiry). Matched only by an expired waiver it stays ``fail``, carries
the waiver with state ``expired``, and the report lists it under expired waivers. Errors are never
waived: a check that could not run is not a risk anyone has accepted.

Findings that arrive already ``waived`` (a report's own findings.json fed back in) are judged
again: with a waiver file they are re-matched from scratch; without one, the waiver they carry is
honoured only while it has not expired, so an old export can never hide an expired waiver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from scanners.findings import Finding, Status
from scanners.waivers import Waiver, WaiverSet


@dataclass(frozen=True, slots=True)
class WaiverUse:
    """A waiver and the fingerprints of the failing findings it matched."""

    waiver: dict[str, Any]  # Waiver.to_dict(today), or the dict a finding carried
    fingerprints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WaiverOutcome:
    findings: tuple[Finding, ...]  # copies with waivers applied, in input order
    active: tuple[WaiverUse, ...]  # waivers that waived at least one finding
    expired: tuple[WaiverUse, ...]  # expired waivers whose findings fail again
    unused: tuple[dict[str, Any], ...]  # waivers that matched no failing finding: candidates for removal


def _key(waiver: dict[str, Any]) -> tuple[str, ...]:
    """What tells two waiver entries apart."""
    resources = ",".join(str(r) for r in waiver.get("resources") or ["*"])
    return (str(waiver["control"]), resources, str(waiver["expires"]), str(waiver["justification"]))


def _embedded_waiver(finding: Finding, today: date) -> dict[str, Any] | None:
    """The waiver a finding already carries, re-judged for expiry; None when it is unusable."""
    data = finding.waiver
    if not data or not all(data.get(k) for k in ("control", "justification", "approver", "expires")):
        return None
    try:
        expires = date.fromisoformat(str(data["expires"]))
    except ValueError:
        return None
    return {**data, "state": "active" if today <= expires else "expired"}


def _waiver_for(finding: Finding, waivers: WaiverSet | None, today: date) -> dict[str, Any] | None:
    if waivers is not None:
        match: Waiver | None = waivers.match(finding)
        return match.to_dict(today) if match else None
    return _embedded_waiver(finding, today) if finding.waiver else None


def apply_waivers(findings: Iterable[Finding], waivers: WaiverSet | None, today: date) -> WaiverOutcome:
    """Annotated copies of the findings and which waivers were active, expired or unused."""
    annotated: list[Finding] = []
    used: dict[tuple[str, ...], tuple[dict[str, Any], list[str]]] = {}
    for finding in findings:
        failing = finding.status in (Status.FAIL, Status.WAIVED)
        waiver = _waiver_for(finding, waivers, today) if failing else None
        if waiver is None:
            if finding.status is Status.WAIVED or finding.waiver is not None:
                # A waived status nobody can justify any more is a failure again, and a waiver
                # the finding carries from an older report but no longer matches is dropped.
                unwaived = Status.FAIL if finding.status is Status.WAIVED else finding.status
                annotated.append(dataclasses.replace(finding, status=unwaived, waiver=None))
            else:
                annotated.append(finding)
            continue
        status = Status.WAIVED if waiver["state"] == "active" else Status.FAIL
        annotated.append(dataclasses.replace(finding, status=status, waiver=waiver))
        used.setdefault(_key(waiver), (waiver, []))[1].append(finding.fingerprint)

    uses = [WaiverUse(w, tuple(fps)) for w, fps in used.values()]
    active = tuple(u for u in uses if u.waiver["state"] == "active")
    expired = tuple(u for u in uses if u.waiver["state"] == "expired")
    unused: list[dict[str, Any]] = []
    if waivers is not None:
        for entry in waivers:
            data = entry.to_dict(today)
            if _key(data) not in used:
                unused.append(data)
    return WaiverOutcome(findings=tuple(annotated), active=active, expired=expired, unused=tuple(unused))

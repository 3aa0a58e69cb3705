"""A check's outcome before it becomes a finding, and the one place that turns it into one.

The rule modules are pure: they read a parsed Dockerfile, a Compose service, daemon.json or an
inspected container and return verdicts. Emitting them (resource, catalog text, fingerprint
key) is the same for every kind of input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scanners.findings import Evidence, Resource, Status
from scanners.scanning import ScanContext

SCANNER = "containers"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One control evaluated on one subject: what was seen, what was expected, and whether it passed."""

    control_id: str
    status: Status
    observed: Any
    expected: Any
    summary: str
    line: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


def verdict(
    control_id: str,
    problems: list[str],
    *,
    observed: Any,
    expected: Any,
    ok: str,
    line: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> Verdict:
    """FAIL naming every problem found, or PASS with ``ok`` as its summary."""
    return Verdict(
        control_id=control_id,
        status=Status.FAIL if problems else Status.PASS,
        observed=observed,
        expected=expected,
        summary="; ".join(problems) if problems else ok,
        line=line if problems else None,
        details=details or {},
    )


def emit_verdicts(
    ctx: ScanContext,
    verdicts: Iterable[Verdict],
    resource: Resource,
    *,
    subject: str = "",
    details: Mapping[str, Any] | None = None,
) -> int:
    """Emit one finding per verdict; returns how many failed.

    ``subject`` separates several subjects in one resource (a Compose service in its project
    file): it prefixes the message and is the finding's discriminator, so each service keeps
    its own fingerprint while the line number is free to move.
    """
    failed = 0
    for item in verdicts:
        control = ctx.catalog.get(item.control_id)
        merged_details = {**(details or {}), **item.details}
        message = f"{subject}: {item.summary}" if subject else item.summary
        ctx.emit(
            control.finding(
                item.status,
                dataclasses.replace(resource, line=item.line) if item.line is not None else resource,
                SCANNER,
                evidence=Evidence(observed=item.observed, expected=item.expected, details=merged_details),
                message=message,
                discriminator=subject,
            )
        )
        failed += item.failed
    return failed

"""Waivers: an accepted risk for one control on matching resources, until an expiry date.

One file is honoured by the roles (a waived control is not remediated on matching hosts) and
by the report (a waived finding is shown as waived until it expires, then fails again):

    waivers:
      - control: SSH-010
        resources: ["sim-2", "sim-*"]   # fnmatch patterns; default ["*"]
        justification: Port forwarding is needed by the data team's tunnel until Q1.
        approver: jane.doe@example.com
        expires: 2027-03-31             # inclusive
        ticket: SEC-123                 # optional
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from scanners.catalog import ID_PATTERN, Catalog
from scanners.errors import InputError
from scanners.findings import Finding

REQUIRED = ("control", "justification", "approver", "expires")
OPTIONAL = ("resources", "ticket")


@dataclass(frozen=True, slots=True)
class Waiver:
    control: str
    resources: tuple[str, ...]
    justification: str
    approver: str
    expires: date
    ticket: str | None = None

    def active(self, today: date) -> bool:
        return today <= self.expires

    def covers(self, names: Iterable[str]) -> bool:
        """True when any of the resource's names matches any pattern."""
        return any(fnmatch.fnmatchcase(name, pattern) for name in names if name for pattern in self.resources)

    def to_dict(self, today: date) -> dict[str, Any]:
        return {
            "control": self.control,
            "resources": list(self.resources),
            "justification": self.justification,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
            "state": "active" if self.active(today) else "expired",
        }


def resource_names(finding: Finding) -> list[str]:
    """Names a waiver pattern may match: host, endpoint, path, container, image, package, label."""
    r = finding.resource
    candidates = [r.host, r.endpoint, r.path, r.container, r.image, r.package, r.label()]
    return [c for c in candidates if c]


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{where}: expires {value!r} is not a date (YYYY-MM-DD)") from None


def _parse(entry: Any, where: str, catalog: Catalog | None) -> Waiver:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: each waiver must be a mapping")
    unknown = set(entry) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = [k for k in REQUIRED if entry.get(k) in (None, "")]
    if missing:
        raise InputError(f"{where}: missing {', '.join(missing)}")
    control = str(entry["control"])
    if not ID_PATTERN.match(control):
        raise InputError(f"{where}: {control!r} is not a control id")
    if catalog is not None and control not in catalog:
        raise InputError(f"{where}: unknown control {control}")
    resources = entry.get("resources", ["*"])
    if isinstance(resources, str):
        resources = [resources]
    if not isinstance(resources, list) or not resources or not all(isinstance(r, str) and r for r in resources):
        raise InputError(f"{where}: resources must be a non-empty list of patterns")
    for key in ("justification", "approver"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise InputError(f"{where}: {key} must be a non-empty string")
    return Waiver(
        control=control,
        resources=tuple(resources),
        justification=entry["justification"].strip(),
        approver=entry["approver"].strip(),
        expires=_parse_date(entry["expires"], where),
        ticket=str(entry["ticket"]) if entry.get("ticket") else None,
    )


@dataclass(frozen=True, slots=True)
class WaiverSet:
    waivers: tuple[Waiver, ...] = ()
    source: str = ""

    def __iter__(self) -> Iterator[Waiver]:
        return iter(self.waivers)

    def __len__(self) -> int:
        return len(self.waivers)

    def match(self, finding: Finding) -> Waiver | None:
        """The waiver for this finding, preferring one still active over an expired one."""
        names = resource_names(finding)
        candidates = [w for w in self.waivers if w.control == finding.control_id and w.covers(names)]
        return max(candidates, key=lambda w: w.expires) if candidates else None

    def active_controls(self, host: str, today: date | None = None) -> list[str]:
        """Control ids waived (and not expired) for a host: what a role must not remediate there."""
        today = today or datetime.now(UTC).date()
        return sorted({w.control for w in self.waivers if w.active(today) and w.covers([host])})

    def for_host(self, host: str, today: date | None = None) -> list[dict[str, Any]]:
        today = today or datetime.now(UTC).date()
        return [w.to_dict(today) for w in self.waivers if w.covers([host])]


def parse_waivers(data: Any, source: str, catalog: Catalog | None = None) -> WaiverSet:
    if data is None:
        return WaiverSet(source=source)
    if not isinstance(data, dict) or set(data) != {"waivers"} or not isinstance(data["waivers"], list | None):
        raise InputError(f"{source}: expected a mapping with a 'waivers' list")
    entries = data["waivers"] or []
    return WaiverSet(tuple(_parse(e, f"{source}: waiver {i + 1}", catalog) for i, e in enumerate(entries)), source)


def load_waivers(path: Path, catalog: Catalog | None = None) -> WaiverSet:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such waiver file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{path}: invalid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    except ValueError as exc:  # PyYAML raises it for impossible dates such as 2027-02-30
        raise InputError(f"{path}: invalid value: {exc}") from None
    return parse_waivers(data, str(path), catalog)

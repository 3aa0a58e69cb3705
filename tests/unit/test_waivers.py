"""Waivers: one file, strict parsing, matching by control and resource pattern, expiry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.errors import InputError
from scanners.findings import Finding, Resource, ResourceKind, Severity, Status
from scanners.waivers import load_waivers

VALID = """
waivers:
  - control: SSH-010
    resources: ["sim-2"]
    justification: The data team tunnels to the warehouse until the VPN lands.
    approver: jane.doe@example.com
    expires: 2027-03-31
    ticket: SEC-123
  - control: SSH-010
    resources: ["sim-*"]
    justification: Old blanket exception.
    approver: bob@example.com
    expires: 2026-01-31
  - control: SSH-021
    justification: Banner text pending legal review.
    approver: legal@example.com
    expires: 2026-12-31
"""


def _finding(control: str, host: str) -> Finding:
    return Finding(control, "t", Severity.MEDIUM, Status.FAIL, Resource(ResourceKind.HOST, host=host), "host")


def test_matching_prefers_the_active_waiver(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text(VALID)
    waivers = load_waivers(path, default_catalog())
    assert len(waivers) == 3
    on_sim2 = waivers.match(_finding("SSH-010", "sim-2"))
    assert on_sim2 is not None and on_sim2.ticket == "SEC-123"
    on_sim1 = waivers.match(_finding("SSH-010", "sim-1"))
    assert on_sim1 is not None and not on_sim1.active(date(2026, 11, 25))
    assert waivers.match(_finding("SSH-001", "sim-2")) is None
    assert waivers.active_controls("sim-2", date(2026, 11, 25)) == ["SSH-010", "SSH-021"]
    assert waivers.active_controls("sim-1", date(2026, 11, 25)) == ["SSH-021"]
    assert waivers.active_controls("sim-2", date(2027, 1, 1)) == ["SSH-010"]
    assert waivers.active_controls("sim-2", date(2027, 4, 1)) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("waivers: [1]", "waiver 1: each waiver must be a mapping"),
        ("waivers:\n  - control: SSH-001\n", "waiver 1: missing justification, approver, expires"),
        (
            "waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: soon}",
            "expires 'soon' is not a date",
        ),
        ("waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: 2027-02-30}", "invalid value"),
        ("waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: 2027-01-01, who: x}", "unknown key"),
        ("waivers:\n  - {control: ssh1, justification: j, approver: a, expires: 2027-01-01}", "not a control id"),
        (
            "waivers:\n  - {control: XYZ-999, justification: j, approver: a, expires: 2027-01-01}",
            "unknown control XYZ-999",
        ),
        (
            "waivers:\n  - {control: SSH-001, justification: ' ', approver: a, expires: 2027-01-01}",
            "justification must be",
        ),
        (
            "waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: 2027-01-01, resources: []}",
            "resources must be a non-empty list",
        ),
        ("rules: []", "expected a mapping with a 'waivers' list"),
        ("waivers: [", "invalid YAML at line"),
    ],
)
def test_malformed_waiver_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_waivers(path, default_catalog())


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such waiver file"):
        load_waivers(tmp_path / "none.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert len(load_waivers(empty)) == 0

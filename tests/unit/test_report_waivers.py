"""Applying waivers: active ones waive, expired ones fail again and are listed, errors never waived."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import pytest

from scanners.errors import InputError
from scanners.findings import Status
from scanners.report import build_report
from scanners.report.apply_waivers import apply_waivers
from scanners.waivers import load_waivers
from tests.unit.report_fixtures import TODAY, WAIVERS, build_catalog, fleet_document, fleet_findings, read


def test_active_waiver_waives_and_expired_one_fails_again(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path)
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    waivers = load_waivers(tmp_path / "waivers.yml", catalog)
    outcome = apply_waivers(fleet_findings(catalog), waivers, TODAY)

    on_sim2 = next(f for f in outcome.findings if f.control_id == "SSH-010" and f.resource.host == "sim-2")
    assert on_sim2.status is Status.WAIVED
    assert on_sim2.waiver is not None and on_sim2.waiver["state"] == "active"
    assert on_sim2.waiver["justification"].startswith("The data team tunnels")
    assert on_sim2.waiver["expires"] == "2027-03-31"

    # sim-1 matches only the blanket waiver, which expired on 2026-10-31
    on_sim1 = next(f for f in outcome.findings if f.control_id == "SSH-010" and f.resource.host == "sim-1")
    assert on_sim1.status is Status.FAIL
    assert on_sim1.waiver is not None and on_sim1.waiver["state"] == "expired"

    assert [(u.waiver["expires"], u.fingerprints) for u in outcome.active] == [("2027-03-31", (on_sim2.fingerprint,))]
    assert [(u.waiver["expires"], u.fingerprints) for u in outcome.expired] == [("2026-10-31", (on_sim1.fingerprint,))]
    # the banner waiver names a host that has no failing banner finding
    assert [w["control"] for w in outcome.unused] == ["SSH-021"]
    # nothing else changed status
    untouched = [f for f in outcome.findings if f.control_id != "SSH-010"]
    assert [f.status for f in untouched] == [f.status for f in fleet_findings(catalog) if f.control_id != "SSH-010"]


def test_expiry_day_is_inclusive(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path)
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    waivers = load_waivers(tmp_path / "waivers.yml", catalog)
    findings = [f for f in fleet_findings(catalog) if f.control_id == "SSH-010" and f.resource.host == "sim-2"]
    last_day = apply_waivers(findings, waivers, date(2027, 3, 31)).findings[0]
    day_after = apply_waivers(findings, waivers, date(2027, 4, 1)).findings[0]
    assert last_day.status is Status.WAIVED
    assert day_after.status is Status.FAIL and day_after.waiver is not None
    assert day_after.waiver["state"] == "expired"


def test_errors_and_passes_are_never_waived(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path)
    (tmp_path / "waivers.yml").write_text(
        "waivers:\n"
        "  - {control: SCAN-001, justification: j, approver: a, expires: 2099-01-01}\n"
        "  - {control: SSH-004, justification: j, approver: a, expires: 2099-01-01}\n"
    )
    outcome = apply_waivers(fleet_findings(catalog), load_waivers(tmp_path / "waivers.yml", catalog), TODAY)
    assert {f.status for f in outcome.findings if f.control_id == "SCAN-001"} == {Status.ERROR}
    assert {f.status for f in outcome.findings if f.control_id == "SSH-004"} == {Status.PASS}
    assert not outcome.active and len(outcome.unused) == 2


def test_a_fed_back_export_cannot_hide_an_expired_waiver(tmp_path: Path) -> None:
    """findings.json of an old report carries waived statuses; without a waiver file they are
    re-judged by the expiry they carry, and a waived status with no waiver is a failure."""
    catalog = build_catalog(tmp_path)
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    waived = apply_waivers(fleet_findings(catalog), load_waivers(tmp_path / "waivers.yml", catalog), TODAY).findings
    later = apply_waivers(waived, None, date(2027, 4, 1))
    sim2 = next(f for f in later.findings if f.control_id == "SSH-010" and f.resource.host == "sim-2")
    assert sim2.status is Status.FAIL and sim2.waiver is not None and sim2.waiver["state"] == "expired"
    still = apply_waivers(waived, None, TODAY)
    assert next(f for f in still.findings if f.fingerprint == sim2.fingerprint).status is Status.WAIVED

    unexplained = [dataclasses.replace(sim2, status=Status.WAIVED, waiver=None)]
    assert apply_waivers(unexplained, None, TODAY).findings[0].status is Status.FAIL

    # the expired one of the old export is listed as expired again, not only shown on the finding
    sim1 = next(f for f in waived if f.control_id == "SSH-010" and f.resource.host == "sim-1")
    assert [u.fingerprints for u in apply_waivers(waived, None, TODAY).expired] == [(sim1.fingerprint,)]
    # with a waiver file, what the old export carried no longer counts
    (tmp_path / "none.yml").write_text("waivers: []\n")
    rejudged = apply_waivers(waived, load_waivers(tmp_path / "none.yml", catalog), TODAY).findings
    assert all(f.waiver is None for f in rejudged) and not any(f.status is Status.WAIVED for f in rejudged)


def test_report_lists_expired_waivers_and_shows_waived_findings(tmp_path: Path) -> None:
    catalog, path = fleet_document(tmp_path)
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    report = build_report(
        read(path), waivers=load_waivers(tmp_path / "waivers.yml", catalog), today=TODAY, catalog=catalog
    )
    assert len(report.waivers.expired) == 1 and len(report.waivers.active) == 1
    assert sum(f.status is Status.WAIVED for f in report.findings) == 1
    # the same scan judged five months later: the remaining waiver has expired too
    later = build_report(
        read(path),
        waivers=load_waivers(tmp_path / "waivers.yml", catalog),
        today=TODAY + timedelta(days=150),
        catalog=catalog,
    )
    assert not later.waivers.active and len(later.waivers.expired) == 2
    assert not any(f.status is Status.WAIVED for f in later.findings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("waivers:\n  - control: SSH-001\n", "missing justification, approver, expires"),
        ("waivers:\n  - {control: SSH-001, justification: j, approver: a, expires: someday}", "is not a date"),
        ("waivers: [", "invalid YAML"),
    ],
)
def test_malformed_waiver_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "waivers.yml").write_text(text)
    with pytest.raises(InputError, match=message):
        load_waivers(tmp_path / "waivers.yml")

"""The diff between two scans by fingerprint, and the CI gate built on it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from scanners.catalog import Catalog
from scanners.errors import EXIT_FINDINGS, EXIT_OK
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.report import Report, build_report, evaluate_gate
from scanners.report.diff import Change
from scanners.waivers import load_waivers
from tests.unit.report_fixtures import SCAN_START, TODAY, build_catalog, document, host

BASELINE_START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
DIFF_WAIVERS = """
waivers:
  - {control: SSH-010, resources: ["sim-*"], justification: blanket, approver: bob@example.com, expires: 2026-10-31}
  - {control: SSH-006, resources: ["sim-2"], justification: slow link, approver: ann@example.com, expires: 2027-06-30}
"""


def _f(catalog: Catalog, cid: str, status: Status, on: str) -> Finding:
    return catalog.get(cid).finding(status, host(on), "host")


def _code(catalog: Catalog, line: int) -> Finding:
    return catalog.get("CODE-901").finding(
        Status.FAIL,
        Resource(ResourceKind.FILE, path="app/tokens.py", line=line),
        "code",
        rule="B105",
        evidence=Evidence(observed="TOKEN = <redacted>"),
        discriminator="TOKEN = <redacted>",
    )


def _scans(tmp_path: Path) -> tuple[Catalog, list[Finding], list[Finding]]:
    catalog = build_catalog(tmp_path)
    baseline = [
        _f(catalog, "SSH-001", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-002", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-003", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-005", Status.PASS, "sim-1"),
        _f(catalog, "SSH-010", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-006", Status.PASS, "sim-2"),
        _f(catalog, "SSH-004", Status.PASS, "sim-1"),
        _code(catalog, line=12),
    ]
    current = [
        _f(catalog, "SSH-001", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-003", Status.PASS, "sim-1"),
        _f(catalog, "SSH-005", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-010", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-006", Status.FAIL, "sim-2"),
        _f(catalog, "SSH-004", Status.PASS, "sim-1"),
        _f(catalog, "SSH-007", Status.FAIL, "sim-1"),
        _f(catalog, "SSH-008", Status.PASS, "sim-1"),
        _code(catalog, line=40),  # the code moved down; the problem is the same
    ]
    return catalog, baseline, current


def _report(tmp_path: Path, waivers: bool = True) -> tuple[Report, dict[str, Change]]:
    catalog, baseline, current = _scans(tmp_path)
    (tmp_path / "waivers.yml").write_text(DIFF_WAIVERS)
    report = build_report(
        document(catalog, current, scan_id="now", started=SCAN_START),
        baseline=document(catalog, baseline, scan_id="before", started=BASELINE_START),
        waivers=load_waivers(tmp_path / "waivers.yml", catalog) if waivers else None,
        today=TODAY,
        catalog=catalog,
    )
    assert report.diff is not None
    return report, {f"{e.control_id} {e.resource}": e.change for e in report.diff.entries}


def test_every_kind_of_change(tmp_path: Path) -> None:
    report, changes = _report(tmp_path)
    assert changes == {
        "SSH-001 sim-1": Change.UNCHANGED,
        "SSH-002 sim-1": Change.FIXED,  # gone from the scan
        "SSH-003 sim-1": Change.FIXED,  # passes now
        "SSH-005 sim-1": Change.REGRESSED,  # passed, fails now
        "SSH-010 sim-1": Change.REGRESSED,  # was waived on the baseline day; the waiver expired
        "SSH-006 sim-2": Change.NEWLY_WAIVED,  # passed, fails now, but a waiver accepts it
        "SSH-007 sim-1": Change.NEW,
        "CODE-901 app/tokens.py:40": Change.UNCHANGED,  # same fingerprint though the line moved
    }
    diff = report.diff
    assert diff is not None
    assert diff.counts == {
        "new": 1,
        "fixed": 2,
        "regressed": 2,
        "unchanged": 2,
        "newly_waived": 1,
        "still_passing": 1,
        "new_passing": 1,
    }
    assert diff.baseline_scan_id == "before"
    new = diff.of(Change.NEW)
    assert [(e.baseline_status, e.current_status) for e in new] == [(None, "fail")]
    fixed = {e.control_id: (e.baseline_status, e.current_status) for e in diff.of(Change.FIXED)}
    assert fixed == {"SSH-002": ("fail", None), "SSH-003": ("fail", "pass")}


def test_without_waivers_the_expired_one_is_simply_unchanged(tmp_path: Path) -> None:
    _, changes = _report(tmp_path, waivers=False)
    assert changes["SSH-010 sim-1"] is Change.UNCHANGED
    assert changes["SSH-006 sim-2"] is Change.REGRESSED


def test_gate_fail_on_severity_ignores_waived_findings(tmp_path: Path) -> None:
    report, _ = _report(tmp_path)
    findings = report.findings
    # failing: SSH-001 high, SSH-005 medium, SSH-010 medium, SSH-007 medium, CODE-901 medium;
    # SSH-006 (medium) is waived and must not count
    high = evaluate_gate(findings, None, fail_on=Severity.HIGH, fail_on_new=False)
    assert high.exit_code == EXIT_FINDINGS
    assert high.reasons == ("1 failing finding(s) at or above high: 1 high",)
    medium = evaluate_gate(findings, None, fail_on=Severity.MEDIUM, fail_on_new=False)
    assert medium.reasons == ("5 failing finding(s) at or above medium: 1 high, 4 medium",)
    critical = evaluate_gate(findings, None, fail_on=Severity.CRITICAL, fail_on_new=False)
    assert critical.exit_code == EXIT_OK and critical.reasons == ()


def test_gate_fail_on_new(tmp_path: Path) -> None:
    report, _ = _report(tmp_path)
    gate = evaluate_gate(report.findings, report.diff, fail_on=None, fail_on_new=True)
    assert gate.exit_code == EXIT_FINDINGS
    assert gate.reasons == ("1 new failing finding(s) since baseline scan before",)
    same = build_report(report.document, baseline=report.document, today=TODAY)
    assert evaluate_gate(same.findings, same.diff, fail_on=None, fail_on_new=True).exit_code == EXIT_OK

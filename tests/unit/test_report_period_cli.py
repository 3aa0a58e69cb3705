"""`preaudit report --period --store`: the audit-period section comes from the history store;
`--fail-on-regression` gives CI and cron a distinct exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scanners.findings_file import write_document
from scanners.history.recording import record_scan
from scanners.history.store import open_store
from tests.history_support import FAIL, PASS, at, scan

PREAUDIT = str(Path(sys.executable).parent / "preaudit")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREAUDIT, *args], capture_output=True, text=True, check=False)


def test_report_renders_the_period_from_the_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'history.sqlite'}"
    documents = [
        scan("s1", at(0), {("SSH-002", "sim-1"): FAIL}),
        scan("s2", at(24), {("SSH-002", "sim-1"): PASS}),
        scan("s3", at(48), {("SSH-002", "sim-1"): FAIL}),
        scan("s4", at(54), {("SSH-002", "sim-1"): PASS}),
    ]
    with open_store(store) as opened:
        for document in documents:
            record_scan(opened, document)
    latest = tmp_path / "latest.json"
    write_document(latest, documents[-1])
    period = f"{at(0).date().isoformat()}..{at(54).date().isoformat()}"

    result = _run(
        "report",
        str(latest),
        "--period",
        period,
        "--store",
        store,
        "--format",
        "json,html",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    section = json.loads((tmp_path / "out" / "report.json").read_text())["period"]
    assert section["scans"] == 4
    regressions = section["regressions"]
    assert [(r["control_id"], r["failed_scan"], r["fixed_scan"]) for r in regressions] == [("SSH-002", "s3", "s4")]
    assert regressions[0]["hours_to_fix"] == 6.0
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"({section['scans']} scans)" in html
    assert 'id="period-regressions"' in html and "<svg" in html.split('id="period"', 1)[1]


def test_period_needs_a_valid_range_and_an_existing_store(tmp_path: Path) -> None:
    document = scan("only", at(0), {("SSH-002", "sim-1"): PASS})
    findings = tmp_path / "f.json"
    write_document(findings, document)
    bad = _run("report", str(findings), "--period", "2026-13-01..2026-12-01", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    missing = _run(
        "report",
        str(findings),
        "--period",
        "2026-01-01..2026-12-01",
        "--store",
        f"sqlite:///{tmp_path / 'none.sqlite'}",
        "--out",
        str(tmp_path / "o"),
    )
    assert missing.returncode in (2, 3) and "Traceback" not in missing.stderr
    store_only = _run("report", str(findings), "--store", "sqlite:///x.db", "--out", str(tmp_path / "o"))
    assert store_only.returncode == 2 and "--store is only read for --period" in store_only.stderr


def test_fail_on_regression_exits_4(tmp_path: Path) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    write_document(before, scan("b", at(0), {("SSH-002", "sim-1"): PASS}))
    write_document(after, scan("a", at(1), {("SSH-002", "sim-1"): FAIL}))
    result = _run(
        "report",
        str(after),
        "--baseline",
        str(before),
        "--fail-on-regression",
        "--format",
        "json",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 4, result.stderr
    assert "1 regression(s) since the baseline" in result.stderr
    clean = _run(
        "report",
        str(before),
        "--baseline",
        str(before),
        "--fail-on-regression",
        "--format",
        "json",
        "--out",
        str(tmp_path / "out2"),
    )
    assert clean.returncode == 0, clean.stderr
    assert _run("report", str(after), "--fail-on-regression", "--out", str(tmp_path / "o")).returncode == 2

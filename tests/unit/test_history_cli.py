"""`preaudit history ...` and `preaudit metrics` through the installed console script, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanners.cli.history_cmd import STORE_ENV_VAR
from scanners.findings_file import read_document, write_document
from scanners.history.recording import record_scan
from scanners.history.store import open_store
from scanners.history.urls import ENV_VAR
from tests.history_support import FAIL, PASS, at, host_finding, scan

PREAUDIT = str(Path(sys.executable).parent / "preaudit")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREAUDIT, *args], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def scans(tmp_path: Path) -> list[Path]:
    """Findings files: SSH-002 on sim-1 passes, regresses, is fixed."""
    paths = []
    for scan_id, hours, status in (("s1", 0, PASS), ("s2", 24, FAIL), ("s3", 30, PASS)):
        path = tmp_path / f"{scan_id}.json"
        write_document(path, scan(scan_id, at(hours), {("SSH-002", "sim-1"): status, ("SSH-001", "sim-1"): PASS}))
        paths.append(path)
    return paths


@pytest.fixture
def store(tmp_path: Path, scans: list[Path]) -> str:
    """A store holding the three scans, recorded in-process (recording by CLI is tested on its own)."""
    url = f"sqlite:///{tmp_path}/history.sqlite"
    with open_store(url) as history:
        for path in scans:
            record_scan(history, read_document(path))
    return url


def test_record_reports_regressions_and_fails_on_them_when_asked(tmp_path: Path, scans: list[Path]) -> None:
    url = str(tmp_path / "h.sqlite")
    first = _run("history", "record", str(scans[0]), "--store", url, "--fail-on-regression")
    assert (first.returncode, first.stdout) == (0, f"recorded scan s1 (2 findings) in sqlite:///{url}\n")
    regressed = _run("history", "record", str(scans[1]), "--store", url, "--fail-on-regression")
    assert regressed.returncode == 4, regressed.stderr
    assert "regression: SSH-002 fails on sim-1, passed in scan s1 (2026-06-01 08:00 UTC)" in regressed.stdout
    again = _run("history", "record", str(scans[1]), "--store", url)
    assert again.returncode == 0  # without --fail-on-regression the regression is reported, not fatal
    assert "scan s2 is already recorded" in again.stdout and "1 regression(s)" in again.stdout


def test_record_takes_the_store_from_the_environment(tmp_path: Path, scans: list[Path]) -> None:
    path = tmp_path / "from-env.sqlite"
    result = _run("history", "record", str(scans[0]), env={"PREAUDIT_STORE": str(path)})
    assert result.returncode == 0, result.stderr
    assert path.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("history", "record", "missing.json"), "missing.json: no such findings file"),
        (("history", "record", "{scan}", "--bundle-signature", "xyz"), "--bundle-signature must be"),
        (("history", "control", "NOPE-001"), "unknown control id 'NOPE-001'"),
        (("history", "control", "SSH-002", "--since", "2026-13-01"), "--since '2026-13-01' is not a date"),
        (("history", "period", "2026-06-01"), "period '2026-06-01' is not START..END"),
        (("history", "period", "2026-06-30..2026-06-01"), "ends before it starts"),
        (("history", "period", "2026-06-01..2026-02-30"), "dates must be YYYY-MM-DD"),
        (("history", "list", "--limit", "0"), "--limit must be at least 1"),
        (("history", "finding", "zz"), "'zz' is not a fingerprint"),
        (("history", "import", "{scan}"), "not a valid history export"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(store: str, scans: list[Path], args: tuple[str, ...], message: str) -> None:
    result = _run(*(a.replace("{scan}", str(scans[0])) for a in args), "--store", store)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_readers_do_not_create_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    result = _run("history", "--store", str(missing))
    assert result.returncode == 2
    assert "does not exist yet" in result.stderr
    assert not missing.exists()


def test_unreachable_postgresql_is_exit_3_and_never_shows_the_password(tmp_path: Path) -> None:
    url = f"postgresql://auditor:Hunter2%40secret@/history?host={tmp_path}&port=5999"
    result = _run("history", "list", "--store", url)
    assert result.returncode == 3
    assert "Hunter2" not in result.stderr + result.stdout
    assert "auditor:***@" in result.stderr
    assert result.stderr.count("\n") == 1


def test_list_shows_scans_and_trend(store: str) -> None:
    table = _run("history", "--store", store)  # `history` alone lists
    assert table.returncode == 0, table.stderr
    for text in ("s1", "s2", "s3", "sim-1", "3 scan(s)"):
        assert text in table.stdout
    listed = _run("history", "list", "--store", store, "--json", "--since", "2026-06-02")
    data = json.loads(listed.stdout)
    assert [(s["id"], s["by_status"]["fail"], s["regressions"]) for s in data] == [("s2", 1, 1), ("s3", 0, 0)]
    assert data[0]["failing_by_severity"]["high"] == 1
    latest = json.loads(_run("history", "list", "--store", store, "--json", "--limit", "1").stdout)
    assert [s["id"] for s in latest] == ["s3"]


def test_control_history_in_json_and_as_tables(store: str) -> None:
    # --store before the action is kept (the action does not reset it).
    result = _run("history", "--store", store, "control", "ssh-002", "--json", "--host", "sim-*")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [resource] = data["resources"]
    assert (resource["resource"], resource["current"], resource["regressions"]) == ("sim-1", "pass", 1)
    assert [
        (i["outcome"], i["from_scan"], i["ended_by_scan"], i["hours_to_fix"], i["regression"])
        for i in resource["intervals"]
    ] == [
        ("pass", "s1", "s2", None, False),
        ("fail", "s2", "s3", 6.0, True),
        ("pass", "s3", None, None, False),
    ]
    assert resource["mean_hours_to_fix"] == 6.0
    text = _run("history", "control", "SSH-002", "--store", store)
    assert text.returncode == 0
    assert "SSH password authentication is disabled" in text.stdout
    assert "FAIL regression from 2026-06-02 08:00 (s2), 1 scan; fixed 2026-06-02 14:00 (s3) after 6.0 h" in text.stdout


def test_period_and_finding(store: str) -> None:
    period = _run("history", "period", "2026-06-01..2026-06-30", "--json", "--store", store)
    assert period.returncode == 0, period.stderr
    data = json.loads(period.stdout)
    assert (data["scans"], len(data["regressions"]), data["regressions"][0]["hours_to_fix"]) == (3, 1, 6.0)
    text = _run("history", "period", "2026-06-01..2026-06-30", "--store", store)
    assert "regressions: 1" in text.stdout and "CC6.1" in text.stdout
    fingerprint = host_finding("SSH-002", "sim-1", FAIL, at(0)).fingerprint
    life = json.loads(_run("history", "finding", fingerprint[:10], "--json", "--store", store).stdout)
    assert [(c["scan_id"], c["to"]) for c in life["changes"]] == [("s1", "pass"), ("s2", "fail"), ("s3", "pass")]


def test_export_import_and_metrics(store: str, tmp_path: Path) -> None:
    export = tmp_path / "audit.json"
    exported = _run("history", "export", str(export), "--store", store)
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 scan(s), 6 finding(s)" in exported.stdout
    target = str(tmp_path / "auditor.sqlite")
    imported = _run("history", "import", str(export), "--store", target)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 scan(s)" in imported.stdout and "1 regression(s)" in imported.stdout

    printed = _run("metrics", "--store", target)
    assert printed.returncode == 0, printed.stderr
    families = {f.name: f for f in text_string_to_metric_families(printed.stdout)}
    assert families["preaudit_regressions"].samples[0].value == 0  # s3 fixed it
    out = tmp_path / "node" / "preaudit.prom"
    assert _run("metrics", "--store", target, "--out", str(out)).returncode == 0
    assert out.read_text() == printed.stdout


def test_help_names_the_store_environment_variable() -> None:
    assert STORE_ENV_VAR == ENV_VAR
    assert f"${ENV_VAR}" in _run("history", "list", "--help").stdout.replace("\n", " ")


def test_help_lists_the_history_actions() -> None:
    result = _run("history", "--help")
    assert result.returncode == 0
    for action in ("list", "record", "control", "finding", "period", "export", "import"):
        assert action in result.stdout
    assert "metrics" in _run("--help").stdout

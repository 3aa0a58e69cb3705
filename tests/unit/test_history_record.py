"""Recording scans: one transaction per scan, drift flags, repeated ids, concurrent writers.

Runs on SQLite and on a real PostgreSQL server (the ``store_url`` fixture).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from scanners.errors import InputError, PreauditError
from scanners.findings_file import read_document, write_document
from scanners.history.models import FindingRow, RequirementRow, ScanRow
from scanners.history.queries import control_timelines, list_scans, load_document
from scanners.history.recording import document_digest, record_scan
from scanners.history.store import HistoryStore, open_store
from tests.history_support import ERROR, FAIL, PASS, at, fleet_scan, scan

PREAUDIT = str(Path(sys.executable).parent / "preaudit")
CONTROLS = ["SSH-001", "SSH-002", "SSH-004"]


def _counts(store: HistoryStore) -> tuple[int, int, int]:
    with store.reading() as conn:
        return (
            conn.execute(select(func.count()).select_from(ScanRow)).scalar_one(),
            conn.execute(select(func.count()).select_from(FindingRow)).scalar_one(),
            conn.execute(select(func.count()).select_from(RequirementRow)).scalar_one(),
        )


def _flags(store: HistoryStore) -> set[tuple[str, str, str]]:
    with store.reading() as conn:
        rows = conn.execute(
            select(FindingRow.scan_id, FindingRow.control_id, FindingRow.resource_label).where(
                FindingRow.regression.is_(True)
            )
        ).all()
    return {(r[0], r[1], r[2]) for r in rows}


def test_record_keeps_scan_metadata_findings_and_requirement_statuses(store_url: str) -> None:
    document = scan("s1", at(0), {("SSH-001", "sim-1"): PASS, ("SSH-002", "sim-1"): FAIL})
    document.scan.vulndb = {"source": "pypa-advisory-db", "snapshot": "2026-05-30"}
    document.components = {"sslyze": "6.3.1"}
    with open_store(store_url) as store:
        result = record_scan(store, document, bundle_signature="ABCDEF01")
        assert (result.scan_id, result.findings, result.regressions, result.already_recorded) == ("s1", 2, (), False)
        [summary] = list_scans(store)
        assert summary.hosts == ["sim-1"]
        assert summary.bundle_signature == "abcdef01"
        assert summary.vulndb == {"source": "pypa-advisory-db", "snapshot": "2026-05-30"}
        assert summary.catalog_version == document.catalog["version"]
        assert summary.catalog_digest == document.catalog["digest"]
        assert summary.by_status["pass"] == 1 and summary.by_status["fail"] == 1
        assert summary.failing_by_severity == {"critical": 0, "high": 1, "medium": 0, "low": 0, "info": 0}
        with store.reading() as conn:
            statuses = dict(
                ((f, r), s)
                for f, r, s in conn.execute(
                    select(RequirementRow.framework, RequirementRow.requirement, RequirementRow.status)
                )
            )
            # SSH-001 passes (CC6.1, CC6.3) and SSH-002 fails (CC6.1): the worst status wins.
            assert statuses[("soc2", "CC6.1")] == "fail"
            assert statuses[("soc2", "CC6.3")] == "pass"
            assert ("mozilla-tls", "x") not in statuses
            # The whole document comes back as it was recorded, digest for digest.
            restored, row = load_document(conn, "s1")
    assert document_digest(restored.to_dict()) == row.document_digest == document_digest(document.to_dict())
    assert restored.components == {"sslyze": "6.3.1"}


def test_recorded_document_keeps_the_tool_version_of_the_file(store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    document = scan("s1", at(0), {("SSH-001", "sim-1"): PASS})
    document.tool_version = "0.0.9"
    write_document(path, document)
    with open_store(store_url) as store:
        record_scan(store, read_document(path))
        assert list_scans(store)[0].tool_version == "0.0.9"


def test_same_scan_twice_is_a_no_op_and_a_different_one_under_its_id_is_refused(store_url: str) -> None:
    first = scan("s1", at(0), {("SSH-002", "sim-1"): PASS})
    with open_store(store_url) as store:
        record_scan(store, first)
        again = record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): PASS}))
        assert again.already_recorded
        before = _counts(store)
        with pytest.raises(InputError, match="already recorded with different content"):
            record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): FAIL}))
        assert _counts(store) == before == (1, 1, 5)  # SSH-002 names 5 requirements


def test_bad_bundle_signature_is_an_input_error(store_url: str) -> None:
    with open_store(store_url) as store, pytest.raises(InputError, match="hexadecimal"):
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): PASS}), bundle_signature="not-hex")


def test_drift_flags_a_control_that_passed_in_the_previous_scan_of_that_resource(store_url: str) -> None:
    with open_store(store_url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): FAIL, ("SSH-002", "sim-2"): PASS}))
        # A scan of another host only: sim-1's previous scan is still s1.
        record_scan(store, scan("s2", at(1), {("SSH-002", "sim-3"): PASS}))
        # sim-1 failed before too (no regression); sim-2 passed before (regression).
        result = record_scan(store, scan("s3", at(2), {("SSH-002", "sim-1"): FAIL, ("SSH-002", "sim-2"): FAIL}))
        assert [(h.control_id, h.resource, h.previous_scan) for h in result.regressions] == [("SSH-002", "sim-2", "s1")]
        assert result.regressions[0].previous_time == at(0)
        # Still failing in the next scan: no new regression.
        assert record_scan(store, scan("s4", at(3), {("SSH-002", "sim-2"): FAIL})).regressions == ()
        assert _flags(store) == {("s3", "SSH-002", "sim-2")}


def test_drift_looks_through_scans_where_the_control_only_errored(store_url: str) -> None:
    with open_store(store_url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): PASS}))
        record_scan(store, scan("s2", at(1), {("SSH-002", "sim-1"): ERROR}))
        result = record_scan(store, scan("s3", at(2), {("SSH-002", "sim-1"): FAIL}))
        assert [h.previous_scan for h in result.regressions] == ["s1"]


def test_a_scan_recorded_out_of_order_corrects_the_next_scans_flag(store_url: str) -> None:
    with open_store(store_url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): FAIL}))
        record_scan(store, scan("s3", at(2), {("SSH-002", "sim-1"): FAIL}))
        assert _flags(store) == set()
        # A pass recorded late, between s1 and s3: s3's failure becomes a regression.
        record_scan(store, scan("s2", at(1), {("SSH-002", "sim-1"): PASS}))
        assert _flags(store) == {("s3", "SSH-002", "sim-1")}
        # And a failure recorded late between s2 and s3 takes the regression over.
        record_scan(store, scan("s2b", at(1.5), {("SSH-002", "sim-1"): FAIL}))
        assert _flags(store) == {("s2b", "SSH-002", "sim-1")}


def _install_failing_trigger(store: HistoryStore) -> None:
    """Make the database itself reject one finding half-way through a scan's insert."""
    with store.writing() as conn:
        if store.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER fail_midway BEFORE INSERT ON scan_findings WHEN NEW.resource_label = 'h-2500' "
                    "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION fail_midway() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.resource_label = 'h-2500' THEN RAISE EXCEPTION 'simulated write failure'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER fail_midway BEFORE INSERT ON scan_findings "
                    "FOR EACH ROW EXECUTE FUNCTION fail_midway()"
                )
            )


def test_a_scan_that_fails_half_way_records_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        record_scan(store, fleet_scan("s1", at(0), 40, CONTROLS, set()))
        before = _counts(store)
        _install_failing_trigger(store)
        # Findings are inserted in batches of 2,000: h-2500 fails in the second batch, after the
        # scan row, the first batch and part of the second are already written.
        with pytest.raises(PreauditError, match="simulated write failure"):
            record_scan(store, fleet_scan("s2", at(1), 3000, ["SSH-005"], set()))
        assert _counts(store) == before
        assert [s.id for s in list_scans(store)] == ["s1"]


def _record_cli(path: Path, url: str) -> subprocess.Popen[str]:
    # The URL goes through the environment, as a password should, not the command line.
    env = {**os.environ, "PREAUDIT_STORE": url}
    return subprocess.Popen(
        [PREAUDIT, "history", "record", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_concurrent_writers_all_succeed_and_drift_is_as_if_sequential(store_url: str, tmp_path: Path) -> None:
    # Six scans of the same 50 hosts, one control flapping per scan; recorded by six processes at
    # once, into a store that does not exist yet (so even creating the schema races).
    hosts = 50
    pattern = [set(), {("SSH-002", "h-1")}, set(), {("SSH-002", "h-1"), ("SSH-004", "h-7")}, set(), set()]
    documents = [fleet_scan(f"s{i}", at(i), hosts, CONTROLS, failing) for i, failing in enumerate(pattern)]
    for document in documents:  # each scan also carries a bulk of findings to make the writes overlap
        document.findings += fleet_scan("x", at(0), 600, ["SSH-005"], set()).findings
    paths = []
    for document in documents:
        path = tmp_path / f"{document.scan.id}.json"
        write_document(path, document)
        paths.append(path)
    random.Random(7).shuffle(paths)
    processes = [_record_cli(path, store_url) for path in paths]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0] * len(paths), [err for _, err in outputs]
    with open_store(store_url) as store:
        scans = list_scans(store)
        assert [s.id for s in scans] == [f"s{i}" for i in range(6)]
        assert all(s.findings == hosts * 3 + 600 for s in scans)
        assert _flags(store) == {("s1", "SSH-002", "h-1"), ("s3", "SSH-002", "h-1"), ("s3", "SSH-004", "h-7")}
        [timeline] = control_timelines(store, "SSH-002", host_pattern="h-1")
        assert [i.outcome.value for i in timeline.intervals] == ["pass", "fail", "pass", "fail", "pass"]
        if store.backend == "sqlite":
            with store.reading() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"

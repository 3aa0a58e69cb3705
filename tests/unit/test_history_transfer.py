"""Export a store for an auditor and import it elsewhere: validated, digest-checked, all or nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from scanners.errors import InputError, PreauditError
from scanners.history.queries import control_timelines, list_scans, load_document
from scanners.history.recording import document_digest, record_scan
from scanners.history.store import open_store
from scanners.history.transfer import export_history, import_history
from tests.history_support import FAIL, PASS, at, scan


def _fill(url: str) -> None:
    with open_store(url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-002", "sim-1"): PASS, ("SSH-001", "sim-1"): PASS}))
        first_fail = scan("s2", at(5), {("SSH-002", "sim-1"): FAIL, ("SSH-001", "sim-1"): PASS})
        first_fail.scan.vulndb = {"snapshot": "2026-05-30", "entries": 1234}
        record_scan(store, first_fail, bundle_signature="00ff")
        record_scan(store, scan("s3", at(9), {("SSH-002", "sim-1"): PASS, ("SSH-001", "sim-1"): PASS}))


def _summary(url: str) -> list[tuple[object, ...]]:
    with open_store(url, create=False) as store:
        return [
            (s.id, s.started_at, s.recorded_at, s.bundle_signature, s.vulndb, s.by_status["fail"], s.regressions)
            for s in list_scans(store)
        ]


def test_export_then_import_reproduces_the_history(store_url: str, tmp_path: Path) -> None:
    _fill(store_url)
    export = tmp_path / "history.json"
    with open_store(store_url) as source:
        result = export_history(source, export)
    assert (result.scans, result.findings) == (3, 6)
    assert export.stat().st_mode & 0o777 == 0o600
    data = json.loads(export.read_text())
    assert data["schema"] == "preaudit/history-export/v1"
    assert [entry["document"]["scan"]["id"] for entry in data["scans"]] == ["s1", "s2", "s3"]

    target = str(tmp_path / "auditor.sqlite")
    with open_store(target) as store:
        imported = import_history(store, export)
        assert (imported.imported, imported.already_present, imported.regressions) == (("s1", "s2", "s3"), (), 1)
        [timeline] = control_timelines(store, "SSH-002")
        assert [(i.outcome.value, i.first.scan_id, i.hours_to_fix) for i in timeline.intervals] == [
            ("pass", "s1", None),
            ("fail", "s2", 4.0),
            ("pass", "s3", None),
        ]
        with store.reading() as conn:
            document, row = load_document(conn, "s2")
        assert document_digest(document.to_dict()) == row.document_digest == data["scans"][1]["document_digest"]
    assert _summary(target) == _summary(store_url)

    with open_store(target) as store:
        again = import_history(store, export)
    assert (again.imported, again.already_present) == ((), ("s1", "s2", "s3"))


def _tampered(export: Path, tmp_path: Path) -> Path:
    data = json.loads(export.read_text())
    [failing] = [f for f in data["scans"][1]["document"]["findings"] if f["status"] == "fail"]
    failing["status"] = "pass"  # hide the failure
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    return path


def test_import_refuses_an_altered_export_and_records_nothing(tmp_path: Path) -> None:
    source = str(tmp_path / "source.sqlite")
    _fill(source)
    export = tmp_path / "history.json"
    with open_store(source) as store:
        export_history(store, export)
    target = str(tmp_path / "target.sqlite")
    with open_store(target) as store:
        with pytest.raises(InputError, match=r"scan 2 \(s2\): content does not match its digest"):
            import_history(store, _tampered(export, tmp_path))
        assert list_scans(store) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON (line 1, column 2"),
        ('{"schema": "preaudit/history-export/v1"}', "not a valid history export at (document)"),
        (
            '{"schema": "preaudit/history-export/v1", "exported_at": "2026-06-01T00:00:00Z", '
            '"tool": {"name": "preaudit", "version": "0.1.0"}, "scans": [{"recorded_at": "2026-06-01T00:00:00Z", '
            '"bundle_signature": null, "document_digest": "' + "0" * 64 + '", "document": {"schema": "x"}}]}',
            "scan 1: not a valid findings document",
        ),
    ],
)
def test_import_of_a_bad_file_is_a_clear_input_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with open_store(str(tmp_path / "h.sqlite")) as store, pytest.raises(InputError, match=re.escape(message)):
        import_history(store, path)


def test_import_conflicting_with_the_target_store_is_refused_as_a_whole(tmp_path: Path) -> None:
    source = str(tmp_path / "source.sqlite")
    _fill(source)
    export = tmp_path / "history.json"
    with open_store(source) as store:
        export_history(store, export)
    target = str(tmp_path / "target.sqlite")
    with open_store(target) as store:
        record_scan(store, scan("s3", at(9), {("SSH-002", "sim-9"): FAIL}))  # same id, other content
        with pytest.raises(InputError, match="scan s3 is already recorded with different content"):
            import_history(store, export)
        assert [s.id for s in list_scans(store)] == ["s3"]


def test_export_refuses_a_store_changed_behind_its_back(tmp_path: Path) -> None:
    url = str(tmp_path / "h.sqlite")
    _fill(url)
    with open_store(url) as store:
        with store.writing() as conn:
            conn.execute(text("UPDATE scan_findings SET status = 'pass' WHERE scan_id = 's2'"))
        with pytest.raises(PreauditError, match="scan s2 no longer matches the digest"):
            export_history(store, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()

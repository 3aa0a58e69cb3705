"""Move a history store to an auditor: export every scan to one JSON file, import it into another store.

The file (schema ``preaudit/history-export/v1``, see export.schema.json) holds each scan as
the findings document it was recorded from, with the SHA-256 of that document and when and
with which bundle signature it was recorded. Export refuses a store whose scans no longer
match their recorded digests; import validates the file and every document, checks every
digest, and records all scans in one transaction (oldest first, so drift is recomputed the
same way). Scans already in the target store with identical content are skipped; a scan id
present with different content aborts the whole import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from scanners import __version__
from scanners.errors import InputError, PreauditError
from scanners.findings import format_timestamp, parse_timestamp, utcnow
from scanners.findings_file import FindingsDocument, document_from_dict
from scanners.fsutil import atomic_writer
from scanners.history.queries import load_document, scan_ids
from scanners.history.recording import document_digest, record_in_transaction
from scanners.history.store import HistoryStore, schema_head

EXPORT_SCHEMA_ID = "preaudit/history-export/v1"
EXPORT_SCHEMA_PATH = Path(__file__).with_name("export.schema.json")


@dataclass(frozen=True, slots=True)
class ExportResult:
    scans: int
    findings: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: tuple[str, ...]
    already_present: tuple[str, ...]
    regressions: int


@cache
def export_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(EXPORT_SCHEMA_PATH.read_text())
    return schema


def export_history(store: HistoryStore, path: Path) -> ExportResult:
    """Write every scan of the store to ``path`` (atomically, owner-only: it holds evidence)."""
    header = {
        "schema": EXPORT_SCHEMA_ID,
        "exported_at": format_timestamp(utcnow()),
        "tool": {"name": "preaudit", "version": __version__, "schema_revision": schema_head()},
    }
    scans = findings = 0
    # One read transaction: the file is a consistent snapshot even while scans are recorded.
    with store.reading() as conn, atomic_writer(path, mode=0o600) as out:
        # Streamed scan by scan (a store may hold millions of findings): the header object is
        # written without its closing brace, then the scans array, then the brace.
        out.write(json.dumps(header, separators=(",", ":"))[:-1].encode() + b',"scans":[')
        for scan_id in scan_ids(conn):
            document, row = load_document(conn, scan_id)
            data = document.to_dict()
            digest = document_digest(data)
            if digest != row.document_digest:
                raise PreauditError(
                    f"store {store.display}: scan {scan_id} no longer matches the digest recorded with it "
                    "(the store was changed outside preaudit); export refused"
                )
            entry = {
                "recorded_at": format_timestamp(row.recorded_at),
                "bundle_signature": row.bundle_signature,
                "document_digest": digest,
                "document": data,
            }
            out.write((",\n" if scans else "\n").encode() + json.dumps(entry, separators=(",", ":")).encode())
            scans += 1
            findings += len(document.findings)
        out.write(b"\n]}\n")
    return ExportResult(scans, findings)


def _read_export(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such history export") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    validator = jsonschema.Draft202012Validator(export_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        raise InputError(f"{path}: not a valid history export at {where}: {error.message}")
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a valid history export")
    return data


def import_history(store: HistoryStore, path: Path) -> ImportResult:
    """Record every scan of an export in one transaction (nothing is recorded if any is invalid)."""
    data = _read_export(path)
    entries: list[tuple[FindingsDocument, dict[str, Any], dict[str, Any]]] = []
    for number, entry in enumerate(data["scans"], start=1):
        where = f"{path}: scan {number}"
        document = document_from_dict(entry["document"], where)
        document_data = document.to_dict()
        if document_digest(document_data) != entry["document_digest"]:
            raise InputError(
                f"{where} ({document.scan.id}): content does not match its digest; the export was altered or damaged"
            )
        entries.append((document, document_data, entry))
    entries.sort(key=lambda e: (e[0].scan.started_at, e[0].scan.id))
    imported: list[str] = []
    present: list[str] = []
    regressions = 0
    with store.writing() as conn:
        for document, document_data, entry in entries:
            result = record_in_transaction(
                conn,
                document,
                document_data,
                entry["bundle_signature"],
                recorded_at=parse_timestamp(entry["recorded_at"]),
            )
            (present if result.already_recorded else imported).append(result.scan_id)
            regressions += 0 if result.already_recorded else len(result.regressions)
    return ImportResult(tuple(imported), tuple(present), regressions)

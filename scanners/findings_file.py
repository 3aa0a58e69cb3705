"""Findings documents on disk: the final JSON file and the JSON-lines stream written during a scan."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import IO, Any

import jsonschema

from scanners import __version__
from scanners.catalog import Catalog
from scanners.errors import InputError
from scanners.findings import Finding, format_timestamp, parse_timestamp, precise_utcnow
from scanners.fsutil import write_text_atomic

SCHEMA_ID = "preaudit/findings/v1"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "findings.schema.json"


@cache
def findings_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validate_document(data: Any, source: str = "findings") -> None:
    """Raise InputError naming the first schema violation and where it is."""
    validator = jsonschema.Draft202012Validator(findings_schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        raise InputError(f"{source}: not a valid findings document at {where}: {error.message}")


@dataclass(slots=True)
class ScanInfo:
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=precise_utcnow)
    finished_at: datetime | None = None
    complete: bool = True
    hosts: list[str] = field(default_factory=list)
    scanners: list[str] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)
    vulndb: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": format_timestamp(self.started_at),
            "finished_at": format_timestamp(self.finished_at or precise_utcnow()),
            "complete": self.complete,
            "hosts": sorted(self.hosts),
            "scanners": sorted(self.scanners),
            "targets": self.targets,
            "vulndb": self.vulndb,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanInfo:
        return cls(
            id=data["id"],
            started_at=parse_timestamp(data["started_at"]),
            finished_at=parse_timestamp(data["finished_at"]),
            complete=bool(data.get("complete", True)),
            hosts=list(data.get("hosts", [])),
            scanners=list(data.get("scanners", [])),
            targets=dict(data.get("targets") or {}),
            vulndb=data.get("vulndb"),
        )


@dataclass(slots=True)
class FindingsDocument:
    scan: ScanInfo
    catalog: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    components: dict[str, str] = field(default_factory=dict)
    # The version of preaudit that produced the document; kept when a document is read back so
    # that rewriting or recording it does not claim the reader's version.
    tool_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        tool: dict[str, Any] = {"name": "preaudit", "version": self.tool_version}
        if self.components:
            tool["components"] = dict(sorted(self.components.items()))
        return {
            "schema": SCHEMA_ID,
            "tool": tool,
            "catalog": self.catalog,
            "scan": self.scan.to_dict(),
            "findings": [f.to_dict() for f in sorted(self.findings, key=_sort_key)],
        }


def _sort_key(finding: Finding) -> tuple[int, str, str, str]:
    return (-finding.severity.rank, finding.control_id, finding.resource.label(), finding.fingerprint)


def new_document(catalog: Catalog, **scan: Any) -> FindingsDocument:
    return FindingsDocument(scan=ScanInfo(**scan), catalog=catalog.metadata())


def write_document(path: Path, document: FindingsDocument) -> None:
    data = document.to_dict()
    validate_document(data, str(path))
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_document(path: Path) -> FindingsDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such findings file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return document_from_dict(data, str(path))


def document_from_dict(data: Any, source: str = "findings") -> FindingsDocument:
    """Validate already-parsed JSON (e.g. one entry of a larger file) and build the document."""
    validate_document(data, source)
    return FindingsDocument(
        scan=ScanInfo.from_dict(data["scan"]),
        catalog=data["catalog"],
        findings=[Finding.from_dict(f) for f in data["findings"]],
        components=dict(data["tool"].get("components", {})),
        tool_version=data["tool"]["version"],
    )


class FindingsStream:
    """Append-only JSON lines, one finding per line, flushed as each arrives.

    An interrupted scan leaves every finding already written intact; a torn last line (the
    process killed mid-write) is skipped by :func:`read_stream`.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] = path.open("a", encoding="utf-8")
        self.count = 0

    def write(self, finding: Finding) -> None:
        self._handle.write(json.dumps(finding.to_dict(), separators=(",", ":")) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> FindingsStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_stream(path: Path) -> list[Finding]:
    findings = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            findings.append(Finding.from_dict(json.loads(line)))
    return findings

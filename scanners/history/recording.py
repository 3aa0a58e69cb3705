"""Record one scan in the history store: the scan, every finding and its requirement statuses, or nothing.

A scan id is recorded once. Recording the same document again is a no-op that reports the
scan as already recorded (so a retried cron job is harmless); a different document under an
id already in the store is refused, because history must not be rewritten.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from scanners.compliance import requirement_statuses
from scanners.errors import InputError
from scanners.findings import Finding, parse_timestamp, utcnow
from scanners.findings_file import FindingsDocument
from scanners.history.drift import RegressionHit, find_regressions, refresh_following, set_regression_flags
from scanners.history.models import FindingRow, RequirementRow, ScanRow
from scanners.history.store import HistoryStore

SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]+$")
_BATCH = 2000


@dataclass(frozen=True, slots=True)
class RecordResult:
    scan_id: str
    started_at: datetime
    findings: int
    regressions: tuple[RegressionHit, ...]
    already_recorded: bool = False


def document_digest(data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a findings document (as produced by ``to_dict``)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalise_signature(value: str | None) -> str | None:
    """A bundle signature as lower-case hex, or InputError."""
    if value is None:
        return None
    signature = value.strip().lower()
    if not SIGNATURE_PATTERN.match(signature) or len(signature) % 2:
        raise InputError("--bundle-signature must be an even number of hexadecimal digits")
    return signature


def record_scan(
    store: HistoryStore, document: FindingsDocument, *, bundle_signature: str | None = None
) -> RecordResult:
    """Record ``document`` (a valid findings document) in one transaction and report its regressions."""
    signature = normalise_signature(bundle_signature)
    data = document.to_dict()
    with store.writing() as conn:
        return record_in_transaction(conn, document, data, signature, recorded_at=utcnow())


def record_in_transaction(
    conn: Connection,
    document: FindingsDocument,
    data: dict[str, Any],
    bundle_signature: str | None,
    *,
    recorded_at: datetime,
) -> RecordResult:
    """Record within the caller's write transaction; ``data`` is ``document.to_dict()``, computed once."""
    scan = data["scan"]
    scan_id: str = scan["id"]
    started = parse_timestamp(scan["started_at"])
    digest = document_digest(data)
    stored_digest = conn.execute(select(ScanRow.document_digest).where(ScanRow.id == scan_id)).scalar_one_or_none()
    if stored_digest is not None:
        if stored_digest != digest:
            raise InputError(
                f"scan {scan_id} is already recorded with different content; recorded scans are never "
                "rewritten (a new scan needs its own id)"
            )
        regressions = tuple(find_regressions(conn, scan_id, started))
        return RecordResult(scan_id, started, len(document.findings), regressions, already_recorded=True)
    conn.execute(insert(ScanRow).values(_scan_values(data, digest, bundle_signature, recorded_at)))
    for batch in _batches([_finding_values(f, scan_id, started) for f in document.findings]):
        conn.execute(insert(FindingRow), batch)
    requirements = [
        {"scan_id": scan_id, "framework": framework, "requirement": requirement, "status": status.value}
        for (framework, requirement), status in requirement_statuses(document.findings).items()
    ]
    if requirements:
        conn.execute(insert(RequirementRow), requirements)
    found = find_regressions(conn, scan_id, started)
    set_regression_flags(conn, [(scan_id, hit.control_id, hit.resource, True) for hit in found])
    refresh_following(conn, scan_id, started)
    return RecordResult(scan_id, started, len(document.findings), tuple(found))


def _scan_values(data: dict[str, Any], digest: str, signature: str | None, recorded_at: datetime) -> dict[str, Any]:
    scan = data["scan"]
    return {
        "id": scan["id"],
        "started_at": parse_timestamp(scan["started_at"]),
        "finished_at": parse_timestamp(scan["finished_at"]),
        "recorded_at": recorded_at,
        "complete": bool(scan.get("complete", True)),
        "hosts": list(scan.get("hosts", [])),
        "scanners": list(scan.get("scanners", [])),
        "targets": dict(scan.get("targets") or {}),
        "vulndb": scan.get("vulndb"),
        "tool_version": data["tool"]["version"],
        "components": dict(data["tool"].get("components", {})),
        "catalog_version": data["catalog"]["version"],
        "catalog_digest": data["catalog"]["digest"],
        "catalog_controls": data["catalog"].get("controls"),
        "bundle_signature": signature,
        "document_digest": digest,
        "findings_count": len(data["findings"]),
    }


def resource_label(finding: Finding) -> str:
    """The unit a control passes or fails on: the resource without its (moving) line number."""
    return replace(finding.resource, line=None).label()


def _finding_values(finding: Finding, scan_id: str, started: datetime) -> dict[str, Any]:
    return {
        "scan_id": scan_id,
        "scan_started_at": started,
        "fingerprint": finding.fingerprint,
        "control_id": finding.control_id,
        "rule": finding.rule,
        "title": finding.title,
        "severity": finding.severity.value,
        "score": finding.score,
        "status": finding.status.value,
        "resource_label": resource_label(finding),
        "host": finding.resource.host,
        "resource": finding.resource.to_dict(),
        "scanner": finding.scanner,
        "message": finding.message,
        "evidence": finding.evidence.to_dict(),
        "remediation": finding.remediation,
        "references": {k: list(v) for k, v in finding.references.items()},
        "discriminator": finding.discriminator,
        "observed_at": finding.observed_at,
        "waiver": finding.waiver,
        "regression": False,
    }


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _BATCH):
        yield rows[start : start + _BATCH]

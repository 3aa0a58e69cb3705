"""Findings documents for history tests: scans of catalog controls on named hosts at explicit times,
and the ``store_url`` fixture that runs a test on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Status
from scanners.findings_file import FindingsDocument, new_document
from scanners.history.urls import display_url, parse_store_url
from tests.postgres_server import PostgresServer

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
PASS, FAIL, ERROR, WAIVED, NA = Status.PASS, Status.FAIL, Status.ERROR, Status.WAIVED, Status.NOT_APPLICABLE


def at(hours: float) -> datetime:
    """A scan time ``hours`` after the start of the test period."""
    return T0 + timedelta(hours=hours)


def host_finding(control_id: str, host: str, status: Status, when: datetime) -> Finding:
    control = default_catalog().get(control_id)
    observed = "no" if status is Status.PASS else "yes"
    finding = control.finding(
        status,
        Resource(ResourceKind.HOST, host=host),
        "host",
        evidence=Evidence(observed=observed, expected="no", details={"source": "sshd -T"}),
    )
    finding.observed_at = when
    return finding


def scan(
    scan_id: str,
    when: datetime,
    results: Mapping[tuple[str, str], Status],
    *,
    hosts: list[str] | None = None,
    extra: list[Finding] | None = None,
) -> FindingsDocument:
    """A findings document: ``results`` maps (control id, host) to the status found there."""
    names = hosts if hosts is not None else sorted({host for _, host in results})
    document = new_document(
        default_catalog(),
        id=scan_id,
        started_at=when,
        finished_at=when + timedelta(minutes=4),
        hosts=names,
        scanners=["host"],
    )
    document.findings = [host_finding(c, h, s, when) for (c, h), s in results.items()] + list(extra or [])
    return document


def fleet_scan(
    scan_id: str, when: datetime, hosts: int, controls: list[str], failing: set[tuple[str, str]]
) -> FindingsDocument:
    """A scan of ``hosts`` hosts (h-1..h-N) on ``controls``, failing exactly the given pairs."""
    names = [f"h-{i}" for i in range(1, hosts + 1)]
    results = {(c, h): (FAIL if (c, h) in failing else PASS) for h in names for c in controls}
    return scan(scan_id, when, results, hosts=names)


# --- the store under test: SQLite always, PostgreSQL when the server can run --------------------


class StoreURL(str):
    """A store URL that shows itself with its password masked (pytest prints the values of a
    failing assertion with repr), while ``str`` and every use of it keep the real one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(display_url(parse_store_url(self)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield StoreURL(tmp_path / "history.sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    try:
        yield StoreURL(server.url(name))
    finally:
        server.drop_database(name)

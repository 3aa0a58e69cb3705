"""The history store's tables: scans, the findings of each scan, and each scan's requirement statuses.

A scan is written once and never changed, so what can be derived from it at record time is
stored with it: the requirement statuses (from :func:`scanners.compliance.requirement_statuses`)
and whether each failing finding is a regression. The one exception is a scan recorded out of
time order, which may change the regression flag of the next scan of the same resources.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so that later migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whether the backend keeps time zones (PostgreSQL) or not (SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the history store; times are UTC-aware")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store them naive and uniformly formatted in UTC.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ScanRow(Base):
    __tablename__ = "scans"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    complete: Mapped[bool] = mapped_column(Boolean)
    hosts: Mapped[list[str]] = mapped_column(JSON)
    scanners: Mapped[list[str]] = mapped_column(JSON)
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)
    vulndb: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tool_version: Mapped[str] = mapped_column(String)
    components: Mapped[dict[str, str]] = mapped_column(JSON)
    catalog_version: Mapped[str] = mapped_column(String)
    catalog_digest: Mapped[str] = mapped_column(String)
    catalog_controls: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bundle_signature: Mapped[str | None] = mapped_column(String, nullable=True)
    # SHA-256 of the canonical findings document: tells a repeated record of the same scan from
    # a different scan reusing its id, and lets an import detect a tampered export.
    document_digest: Mapped[str] = mapped_column(String)
    findings_count: Mapped[int] = mapped_column(Integer)


class FindingRow(Base):
    __tablename__ = "scan_findings"
    __table_args__ = (
        # A control's history on a resource, and the drift look-back to its previous scan.
        Index("ix_scan_findings_key", "control_id", "resource_label", "scan_started_at"),
        # Per-scan tallies by status and severity.
        Index("ix_scan_findings_scan", "scan_id", "status", "severity"),
        # A finding's life across scans.
        Index("ix_scan_findings_fingerprint", "fingerprint", "scan_started_at"),
    )

    # A surrogate key: two hits with identical content (same fingerprint) may occur in one scan.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    # Copied from the scan so that time-ordered look-ups per control and resource need no join.
    scan_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fingerprint: Mapped[str] = mapped_column(String)
    control_id: Mapped[str] = mapped_column(String)
    rule: Mapped[str | None] = mapped_column(String, nullable=True)
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String)
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String)
    # The resource label without the line number: the unit a control passes or fails on.
    resource_label: Mapped[str] = mapped_column(String)
    host: Mapped[str | None] = mapped_column(String, nullable=True)
    resource: Mapped[dict[str, Any]] = mapped_column(JSON)
    scanner: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    remediation: Mapped[str] = mapped_column(Text)
    references: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    discriminator: Mapped[str] = mapped_column(String)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    waiver: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    regression: Mapped[bool] = mapped_column(Boolean)


class RequirementRow(Base):
    __tablename__ = "scan_requirements"

    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True)
    framework: Mapped[str] = mapped_column(String, primary_key=True)
    requirement: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)

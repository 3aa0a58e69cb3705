"""The first history store schema: scans, their findings and their requirement statuses.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scans",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("scanners", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("vulndb", sa.JSON(), nullable=True),
        sa.Column("tool_version", sa.String(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("catalog_version", sa.String(), nullable=False),
        sa.Column("catalog_digest", sa.String(), nullable=False),
        sa.Column("catalog_controls", sa.Integer(), nullable=True),
        sa.Column("bundle_signature", sa.String(), nullable=True),
        sa.Column("document_digest", sa.String(), nullable=False),
        sa.Column("findings_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.create_index(op.f("ix_scans_started_at"), "scans", ["started_at"])

    op.create_table(
        "scan_findings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.String(), nullable=False),
        sa.Column("scan_started_at", _TIME, nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("control_id", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("resource_label", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("resource", sa.JSON(), nullable=False),
        sa.Column("scanner", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("remediation", sa.Text(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("discriminator", sa.String(), nullable=False),
        sa.Column("observed_at", _TIME, nullable=False),
        sa.Column("waiver", sa.JSON(), nullable=True),
        sa.Column("regression", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scan_findings_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_findings")),
    )
    op.create_index("ix_scan_findings_key", "scan_findings", ["control_id", "resource_label", "scan_started_at"])
    op.create_index("ix_scan_findings_scan", "scan_findings", ["scan_id", "status", "severity"])
    op.create_index("ix_scan_findings_fingerprint", "scan_findings", ["fingerprint", "scan_started_at"])

    op.create_table(
        "scan_requirements",
        sa.Column("scan_id", sa.String(), nullable=False),
        sa.Column("framework", sa.String(), nullable=False),
        sa.Column("requirement", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scan_requirements_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("scan_id", "framework", "requirement", name=op.f("pk_scan_requirements")),
    )


def downgrade() -> None:
    op.drop_table("scan_requirements")
    op.drop_index("ix_scan_findings_fingerprint", table_name="scan_findings")
    op.drop_index("ix_scan_findings_scan", table_name="scan_findings")
    op.drop_index("ix_scan_findings_key", table_name="scan_findings")
    op.drop_table("scan_findings")
    op.drop_index(op.f("ix_scans_started_at"), table_name="scans")
    op.drop_table("scans")

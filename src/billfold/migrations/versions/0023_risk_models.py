"""Risk models: trained model versions (serialized state, status, metrics) and drift
alerts.

Revision ID: 0023_risk_models
Revises: 0022_risk_cases
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_risk_models"
down_revision = "0022_risk_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_model_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("state_digest", sa.String(80), nullable=False),
        sa.Column("trained_on", sa.BigInteger(), nullable=False),
        sa.Column("watermark_at", sa.BigInteger(), nullable=False),
        sa.Column("watermark_id", sa.Uuid(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("promoted_at", sa.BigInteger(), nullable=True),
        sa.Column("promoted_by", sa.String(64), nullable=True),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_model_versions")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_model_versions_mode")),
        sa.CheckConstraint(
            "kind IN ('supervised', 'anomaly')", name=op.f("ck_risk_model_versions_kind")
        ),
        sa.CheckConstraint(
            "status IN ('shadow', 'active', 'retired')", name=op.f("ck_risk_model_versions_status")
        ),
    )
    op.create_index(
        "uq_risk_model_versions_version",
        "risk_model_versions",
        ["tenant_id", "mode", "name", "version"],
        unique=True,
    )
    op.create_index(
        "ix_risk_model_versions_status", "risk_model_versions", ["tenant_id", "mode", "status"]
    )
    op.create_index(
        "uq_risk_model_versions_active",
        "risk_model_versions",
        ["tenant_id", "mode", "kind"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "risk_model_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_size", sa.Integer(), nullable=False),
        sa.Column("reference_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_model_alerts")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_model_alerts_mode")),
    )
    op.create_index(
        "ix_risk_model_alerts_tenant", "risk_model_alerts", ["tenant_id", "mode", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_risk_model_alerts_tenant", table_name="risk_model_alerts")
    op.drop_table("risk_model_alerts")
    op.drop_index("uq_risk_model_versions_active", table_name="risk_model_versions")
    op.drop_index("ix_risk_model_versions_status", table_name="risk_model_versions")
    op.drop_index("uq_risk_model_versions_version", table_name="risk_model_versions")
    op.drop_table("risk_model_versions")

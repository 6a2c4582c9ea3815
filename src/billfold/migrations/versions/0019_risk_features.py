"""Risk features: the database velocity counters, users' risk profiles (residence), and an
index for a user's recent security events.

Revision ID: 0019_risk_features
Revises: 0021_payments_risk
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_risk_features"
down_revision = "0021_payments_risk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_counters",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("width_s", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_squares", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "mode", "key", "width_s", "bucket", name=op.f("pk_risk_counters")
        ),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_counters_mode")),
        sa.CheckConstraint("width_s >= 0", name=op.f("ck_risk_counters_width")),
        # SQLite: the primary key is the table, so a window's read is one range of it.
        sqlite_with_rowid=False,
    )
    op.create_index("ix_risk_counters_expires_at", "risk_counters", ["expires_at"])
    op.create_table(
        "risk_profiles",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("residence_country", sa.String(2), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "mode", "user_id", name=op.f("pk_risk_profiles")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_profiles_mode")),
    )
    op.create_index(
        "ix_identity_security_events_tenant_subject_occurred",
        "identity_security_events",
        ["tenant_id", "subject_id", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_identity_security_events_tenant_subject_occurred",
        table_name="identity_security_events",
    )
    op.drop_table("risk_profiles")
    op.drop_index("ix_risk_counters_expires_at", table_name="risk_counters")
    op.drop_table("risk_counters")

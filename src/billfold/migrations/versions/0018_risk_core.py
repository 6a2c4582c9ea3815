"""Risk: decisions (with the features they saw), fraud labels, review cases and automated
responses.

Revision ID: 0018_risk_core
Revises: 0015_events_secrets
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_risk_core"
down_revision = "0015_events_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("payee", sa.String(80), nullable=True),
        sa.Column("merchant_id", sa.Uuid(), nullable=True),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(12), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("hits", sa.Text(), nullable=False),
        sa.Column("model_score", sa.Float(), nullable=True),
        sa.Column("ruleset_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_decisions")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_decisions_mode")),
        sa.CheckConstraint(
            "action IN ('allow', 'challenge', 'review', 'block')",
            name=op.f("ck_risk_decisions_action"),
        ),
    )
    op.create_index(
        "ix_risk_decisions_tenant_created", "risk_decisions", ["tenant_id", "mode", "created_at"]
    )
    op.create_index(
        "ix_risk_decisions_reference", "risk_decisions", ["tenant_id", "mode", "reference"]
    )
    op.create_index("ix_risk_decisions_user_created", "risk_decisions", ["user_id", "created_at"])
    op.create_table(
        "risk_labels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("fraud", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_labels")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_labels_mode")),
    )
    op.create_index(
        "uq_risk_labels_reference_source",
        "risk_labels",
        ["tenant_id", "mode", "reference", "source"],
        unique=True,
    )
    op.create_index(
        "ix_risk_labels_tenant_updated", "risk_labels", ["tenant_id", "mode", "updated_at"]
    )

    op.create_table(
        "risk_cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(12), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("hold_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_cases")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_cases_mode")),
        sa.CheckConstraint(
            "state IN ('open', 'approved', 'rejected', 'expired')",
            name=op.f("ck_risk_cases_state"),
        ),
    )
    op.create_index(
        "uq_risk_cases_reference", "risk_cases", ["tenant_id", "mode", "reference"], unique=True
    )
    op.create_index(
        "ix_risk_cases_queue", "risk_cases", ["tenant_id", "mode", "state", "opened_at"]
    )
    op.create_index("ix_risk_cases_expiry", "risk_cases", ["state", "hold_expires_at"])
    op.create_table(
        "risk_responses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.Column("reversed_at", sa.BigInteger(), nullable=True),
        sa.Column("reversed_by", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_responses")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_responses_mode")),
        sa.CheckConstraint(
            "state IN ('active', 'reversing', 'reversed')", name=op.f("ck_risk_responses_state")
        ),
    )
    op.create_index(
        "ix_risk_responses_user", "risk_responses", ["tenant_id", "mode", "user_id", "state"]
    )


def downgrade() -> None:
    op.drop_table("risk_responses")
    op.drop_table("risk_cases")
    op.drop_table("risk_labels")
    op.drop_table("risk_decisions")

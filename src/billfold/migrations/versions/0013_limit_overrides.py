"""Wallets: limit overrides, the per-holder spending limits four-eyes ``limit_increase``
approvals raise above the KYC tier's figures.

Revision ID: 0013_limit_overrides
Revises: 0012_api_key_scopes
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_limit_overrides"
down_revision = "0012_api_key_scopes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallets_limit_overrides",
        sa.Column("approval_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("limit_window", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("approved_by", sa.Uuid(), nullable=False),
        sa.Column("approved_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "mode IN ('test', 'live')", name=op.f("ck_wallets_limit_overrides_mode")
        ),
        sa.CheckConstraint(
            "owner_kind IN ('user', 'merchant')", name=op.f("ck_wallets_limit_overrides_owner_kind")
        ),
        sa.CheckConstraint(
            "limit_window IN ('per_transaction', 'daily', 'monthly')",
            name=op.f("ck_wallets_limit_overrides_limit_window"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_wallets_limit_overrides_amount")),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_wallets_limit_overrides")),
    )
    op.create_index(
        "ix_wallets_limit_overrides_owner",
        "wallets_limit_overrides",
        ["owner_id", "currency", "limit_window", "approved_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_wallets_limit_overrides_owner", table_name="wallets_limit_overrides")
    op.drop_table("wallets_limit_overrides")

"""Payments: cross-currency payments (source currency, amount and FX quote), fees kept or
returned on refunds, and the monthly captured volume that fee tiers are chosen by.

Revision ID: 0016_payments_fx
Revises: 0013_limit_overrides
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_payments_fx"
down_revision = "0013_limit_overrides"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments_payments") as table:
        table.add_column(sa.Column("authorization_expires_at", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("source_currency", sa.String(length=12), nullable=True))
        table.add_column(sa.Column("source_amount", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("fx_quote_id", sa.Uuid(), nullable=True))
        table.create_index("ix_payments_payments_state_created_at", ["state", "created_at"])
        table.create_index("ix_payments_payments_state_expires_at", ["state", "expires_at"])
        table.create_index(
            "ix_payments_payments_state_authorization_expires_at",
            ["state", "authorization_expires_at"],
        )
    with op.batch_alter_table("payments_fees") as table:
        table.add_column(
            sa.Column("fixed_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("payments_refunds") as table:
        table.add_column(
            sa.Column("fee_returned", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.create_table(
        "payments_monthly_volume",
        sa.Column("ledger_tenant_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "ledger_tenant_id",
            "scope",
            "currency",
            "month",
            "shard",
            name=op.f("pk_payments_monthly_volume"),
        ),
    )


def downgrade() -> None:
    op.drop_table("payments_monthly_volume")
    with op.batch_alter_table("payments_refunds") as table:
        table.drop_column("fee_returned")
    with op.batch_alter_table("payments_fees") as table:
        table.drop_column("fixed_amount")
    with op.batch_alter_table("payments_payments") as table:
        table.drop_index("ix_payments_payments_state_authorization_expires_at")
        table.drop_index("ix_payments_payments_state_expires_at")
        table.drop_index("ix_payments_payments_state_created_at")
        table.drop_column("fx_quote_id")
        table.drop_column("source_amount")
        table.drop_column("source_currency")
        table.drop_column("authorization_expires_at")

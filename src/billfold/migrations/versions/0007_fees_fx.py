"""Fees and FX: fee schedules, FX quotes (with their conversions) and FX tenant settings.

Revision ID: 0007_fees_fx
Revises: 0006_operators
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_fees_fx"
down_revision = "0006_operators"
branch_labels = None
depends_on = None

SCHEDULES = "fees_schedules"
QUOTES = "fx_quotes"
FX_SETTINGS = "fx_tenant_settings"


def upgrade() -> None:
    op.create_table(
        SCHEDULES,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("merchant_id", sa.Uuid),
        sa.Column("scope_key", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{SCHEDULES}"),
        sa.UniqueConstraint("tenant_id", "scope_key", name=f"uq_{SCHEDULES}_tenant_id_scope_key"),
        sa.CheckConstraint("version >= 1", name=f"ck_{SCHEDULES}_version"),
    )
    op.create_index(f"ix_{SCHEDULES}_tenant_id_id", SCHEDULES, ["tenant_id", "id"])
    op.create_table(
        QUOTES,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("sell_currency", sa.String(3), nullable=False),
        sa.Column("buy_currency", sa.String(3), nullable=False),
        sa.Column("sell_amount", sa.BigInteger, nullable=False),
        sa.Column("buy_amount", sa.BigInteger, nullable=False),
        sa.Column("fixed_side", sa.String(4), nullable=False),
        sa.Column("mid_rate", sa.String(48), nullable=False),
        sa.Column("rate", sa.String(48), nullable=False),
        sa.Column("spread_bps", sa.Integer, nullable=False),
        sa.Column("rates_date", sa.String(10), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger),
        sa.Column("sell_account_id", sa.Uuid),
        sa.Column("buy_account_id", sa.Uuid),
        sa.PrimaryKeyConstraint("id", name=f"pk_{QUOTES}"),
        sa.CheckConstraint("fixed_side IN ('sell', 'buy')", name=f"ck_{QUOTES}_fixed_side"),
        sa.CheckConstraint(
            "sell_amount > 0 AND buy_amount > 0", name=f"ck_{QUOTES}_amounts_positive"
        ),
    )
    op.create_index(f"ix_{QUOTES}_tenant_id_id", QUOTES, ["tenant_id", "id"])
    op.create_table(
        FX_SETTINGS,
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("spread_bps", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=f"pk_{FX_SETTINGS}"),
        sa.CheckConstraint(
            "spread_bps >= 0 AND spread_bps <= 2000", name=f"ck_{FX_SETTINGS}_spread"
        ),
    )


def downgrade() -> None:
    op.drop_table(FX_SETTINGS)
    op.drop_index(f"ix_{QUOTES}_tenant_id_id", table_name=QUOTES)
    op.drop_table(QUOTES)
    op.drop_index(f"ix_{SCHEDULES}_tenant_id_id", table_name=SCHEDULES)
    op.drop_table(SCHEDULES)

"""Wallets: tenants' own tier limits, per mode, KYC tier and currency in minor units, set
and removed by the new four-eyes action type ``tier_limits_change`` (append-only: the
latest approval per key is in force; none, the default table).

Revision ID: 0033_tier_limits
Revises: 0032_payment_capture_claims
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033_tier_limits"
down_revision = "0032_payment_capture_claims"
branch_labels = None
depends_on = None

_TABLE = "wallets_tier_limits"
_INDEX = "ix_wallets_tier_limits_key"
_APPROVALS = "identity_approval_requests"
_ACTION_TYPES = (
    "'ledger_adjustment', 'account_unfreeze', 'limit_increase', 'key_rotation',"
    " 'risk_rule_change', 'risk_response_reversal', 'risk_model_promotion'"
)


def _action_types(allowed: str) -> None:
    with op.batch_alter_table(_APPROVALS) as table:
        table.drop_constraint(f"ck_{_APPROVALS}_action_type", type_="check")
        table.create_check_constraint(
            op.f(f"ck_{_APPROVALS}_action_type"), f"action_type IN ({allowed})"
        )


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("approval_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("per_transaction", sa.BigInteger(), nullable=True),
        sa.Column("daily", sa.BigInteger(), nullable=True),
        sa.Column("monthly", sa.BigInteger(), nullable=True),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("approved_by", sa.Uuid(), nullable=False),
        sa.Column("approved_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f(f"ck_{_TABLE}_mode")),
        sa.CheckConstraint("tier BETWEEN 0 AND 3", name=op.f(f"ck_{_TABLE}_tier")),
        sa.CheckConstraint(
            "(per_transaction IS NULL AND daily IS NULL AND monthly IS NULL)"
            " OR (per_transaction IS NOT NULL AND daily IS NOT NULL AND monthly IS NOT NULL"
            " AND per_transaction > 0 AND per_transaction <= daily AND daily <= monthly)",
            name=op.f(f"ck_{_TABLE}_figures"),
        ),
        sa.PrimaryKeyConstraint("approval_id", name=op.f(f"pk_{_TABLE}")),
    )
    op.create_index(
        _INDEX, _TABLE, ["tenant_id", "mode", "tier", "currency", "approved_at"], unique=False
    )
    _action_types(f"{_ACTION_TYPES}, 'tier_limits_change'")


def downgrade() -> None:
    # The older release knows no such requests, nor tenants' figures: its default table
    # applies again to every holder.
    op.execute(f"DELETE FROM {_APPROVALS} WHERE action_type = 'tier_limits_change'")
    _action_types(_ACTION_TYPES)
    op.drop_index(_INDEX, table_name=_TABLE)
    op.drop_table(_TABLE)

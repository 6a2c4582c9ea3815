"""Risk review queue and automated responses: case notes, case resolutions (the money side
of a decided case), freeze enforcements, wallets' risk limit reductions, and the
``risk_response_reversal`` four-eyes action type.

Revision ID: 0022_risk_cases
Revises: 0020_risk_rules
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_risk_cases"
down_revision = "0020_risk_rules"
branch_labels = None
depends_on = None


_APPROVALS = "identity_approval_requests"
_ACTION_TYPES = (
    "'ledger_adjustment', 'account_unfreeze', 'limit_increase', 'key_rotation', 'risk_rule_change'"
)


def _action_types(allowed: str) -> None:
    with op.batch_alter_table(_APPROVALS) as table:
        table.drop_constraint(f"ck_{_APPROVALS}_action_type", type_="check")
        table.create_check_constraint(
            op.f(f"ck_{_APPROVALS}_action_type"), f"action_type IN ({allowed})"
        )


def upgrade() -> None:
    _action_types(f"{_ACTION_TYPES}, 'risk_response_reversal'")
    op.create_table(
        "risk_case_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_case_notes")),
    )
    op.create_index("ix_risk_case_notes_case", "risk_case_notes", ["case_id", "created_at"])
    op.create_table(
        "risk_case_resolutions",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_risk_case_resolutions")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_case_resolutions_mode")),
        sa.CheckConstraint(
            "state IN ('pending', 'settled')", name=op.f("ck_risk_case_resolutions_state")
        ),
    )
    op.create_index(
        "ix_risk_case_resolutions_pending", "risk_case_resolutions", ["state", "requested_at"]
    )
    op.create_table(
        "risk_response_enforcements",
        sa.Column("response_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("done_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_risk_response_enforcements")),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'cancelled')",
            name=op.f("ck_risk_response_enforcements_state"),
        ),
    )
    op.create_index(
        "ix_risk_response_enforcements_pending",
        "risk_response_enforcements",
        ["state", "created_at"],
    )
    op.create_table(
        "wallets_limit_reductions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("limit_bps", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("lifted_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_limit_reductions")),
        sa.CheckConstraint(
            "mode IN ('test', 'live')", name=op.f("ck_wallets_limit_reductions_mode")
        ),
        sa.CheckConstraint(
            "limit_bps BETWEEN 0 AND 10000", name=op.f("ck_wallets_limit_reductions_limit_bps")
        ),
    )
    op.create_index(
        "ix_wallets_limit_reductions_user", "wallets_limit_reductions", ["user_id", "lifted_at"]
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {_APPROVALS} WHERE action_type = 'risk_response_reversal'")
    _action_types(_ACTION_TYPES)
    op.drop_table("wallets_limit_reductions")
    op.drop_table("risk_response_enforcements")
    op.drop_table("risk_case_resolutions")
    op.drop_table("risk_case_notes")

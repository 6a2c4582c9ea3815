"""Risk models: promoting a version needs four eyes. Approval requests may be of the new
action type ``risk_model_promotion``; a model version records its promotion's request.

Revision ID: 0025_risk_model_promotion
Revises: 0024_risk_rule_disable_approval
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_risk_model_promotion"
down_revision = "0024_risk_rule_disable_approval"
branch_labels = None
depends_on = None

_APPROVALS = "identity_approval_requests"
_ACTION_TYPES = (
    "'ledger_adjustment', 'account_unfreeze', 'limit_increase', 'key_rotation',"
    " 'risk_rule_change', 'risk_response_reversal'"
)


def _action_types(allowed: str) -> None:
    with op.batch_alter_table(_APPROVALS) as table:
        table.drop_constraint(f"ck_{_APPROVALS}_action_type", type_="check")
        table.create_check_constraint(
            op.f(f"ck_{_APPROVALS}_action_type"), f"action_type IN ({allowed})"
        )


def upgrade() -> None:
    _action_types(f"{_ACTION_TYPES}, 'risk_model_promotion'")
    op.add_column(
        "risk_model_versions", sa.Column("promotion_approval_id", sa.Uuid(), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("risk_model_versions") as table:
        table.drop_column("promotion_approval_id")
    op.execute(f"DELETE FROM {_APPROVALS} WHERE action_type = 'risk_model_promotion'")
    _action_types(_ACTION_TYPES)

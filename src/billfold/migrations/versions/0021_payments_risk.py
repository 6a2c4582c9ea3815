"""Payments: every money movement passes a risk decision (issue 7).

- ``payments_payments.risk_decision_id``: the decision that admitted or held the payment
  (labels and cases find the decision by it);
- ``payments_payments.parked_instrument``: the card or account number of a top-up parked
  for review before its provider is charged, sealed with the keyring (cleared once the
  provider is charged or the top-up fails);
- ``payments_refunds.risk_decision_id`` and the refund state ``in_review`` (a refund held
  as a pending transfer while a risk analyst decides).

Revision ID: 0021_payments_risk
Revises: 0023_risk_models
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_payments_risk"
down_revision = "0023_risk_models"
branch_labels = None
depends_on = None

_REFUND_STATES = "state IN ('pending', 'succeeded', 'failed')"
_REFUND_STATES_WITH_REVIEW = "state IN ('pending', 'in_review', 'succeeded', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("payments_payments") as table:
        table.add_column(sa.Column("risk_decision_id", sa.Uuid(), nullable=True))
        table.add_column(sa.Column("parked_instrument", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("payments_refunds") as table:
        table.add_column(sa.Column("risk_decision_id", sa.Uuid(), nullable=True))
        table.drop_constraint("ck_payments_refunds_state", type_="check")
        table.create_check_constraint(op.f("ck_payments_refunds_state"), _REFUND_STATES_WITH_REVIEW)


def downgrade() -> None:
    # Refunds still held for review were never paid: they fail (their pending transfers
    # must be voided by the newer code before downgrading).
    op.execute("UPDATE payments_refunds SET state = 'failed' WHERE state = 'in_review'")
    with op.batch_alter_table("payments_refunds") as table:
        table.drop_constraint("ck_payments_refunds_state", type_="check")
        table.create_check_constraint(op.f("ck_payments_refunds_state"), _REFUND_STATES)
        table.drop_column("risk_decision_id")
    with op.batch_alter_table("payments_payments") as table:
        table.drop_column("parked_instrument")
        table.drop_column("risk_decision_id")

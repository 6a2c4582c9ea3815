"""Payments: the moment a payment counts toward its payer's spending limits
(``payments_payments.spent_at``), indexed with the payer in place of the creation time.

Merchant payments now count from the payer's authorization (claimed in the limit check's
transaction), not from their creation. Existing rows are filled in: merchant payments
with a payer from their first ``authorized`` history row (else their creation), every
other payment with a payer from its creation.

Revision ID: 0017_spend_time
Revises: 0014_totp_seeds
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_spend_time"
down_revision = "0014_totp_seeds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments_payments") as table:
        table.add_column(sa.Column("spent_at", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE payments_payments SET spent_at = COALESCE("
        " (SELECT MIN(history.at) FROM payments_state_history AS history"
        "  WHERE history.payment_id = payments_payments.id"
        "  AND history.to_state = 'authorized'),"
        " created_at)"
        " WHERE payer_user_id IS NOT NULL AND kind = 'merchant'"
    )
    op.execute(
        "UPDATE payments_payments SET spent_at = created_at"
        " WHERE payer_user_id IS NOT NULL AND kind <> 'merchant'"
    )
    with op.batch_alter_table("payments_payments") as table:
        table.drop_index("ix_payments_payments_payer_user_id_created_at")
        table.create_index(
            "ix_payments_payments_payer_user_id_spent_at", ["payer_user_id", "spent_at"]
        )


def downgrade() -> None:
    # Claims of authorizations under way (a payer on a payment still requires_payment)
    # did not exist before: release them.
    op.execute(
        "UPDATE payments_payments SET payer_user_id = NULL, debit_account_id = NULL"
        " WHERE kind = 'merchant' AND state = 'requires_payment'"
    )
    with op.batch_alter_table("payments_payments") as table:
        table.drop_index("ix_payments_payments_payer_user_id_spent_at")
        table.create_index(
            "ix_payments_payments_payer_user_id_created_at", ["payer_user_id", "created_at"]
        )
        table.drop_column("spent_at")

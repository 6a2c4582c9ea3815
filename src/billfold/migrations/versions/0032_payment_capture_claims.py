"""A merchant payment's capture claims its amount before the ledger moves money: the fees
are priced and recorded with the claim (`capture_claim`, `capture_claimed_at`), so a
capture retried or recovered after a crash posts what was priced, and another amount is
refused meanwhile. The partial index serves recovery's search for claims a crash left
(it holds claimed payments only; building it reads the payments table once).

Revision ID: 0032_payment_capture_claims
Revises: 0031_dispute_resolution_claims
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032_payment_capture_claims"
down_revision = "0031_dispute_resolution_claims"
branch_labels = None
depends_on = None

_PAYMENTS = "payments_payments"
_INDEX = "ix_payments_payments_capture_claimed_at"
_CLAIMED = sa.text("capture_claim IS NOT NULL")


def upgrade() -> None:
    op.add_column(_PAYMENTS, sa.Column("capture_claim", sa.BigInteger(), nullable=True))
    op.add_column(_PAYMENTS, sa.Column("capture_claimed_at", sa.BigInteger(), nullable=True))
    op.create_index(
        _INDEX,
        _PAYMENTS,
        ["capture_claimed_at"],
        postgresql_where=_CLAIMED,
        sqlite_where=_CLAIMED,
    )


def downgrade() -> None:
    # A claim still under way is forgotten with its priced fees (an authorized payment has
    # no other fee lines): the older release prices its capture again when it is retried,
    # and records the fees it posts.
    op.execute(
        f"DELETE FROM payments_fees WHERE payment_id IN (SELECT id FROM {_PAYMENTS} "
        "WHERE state = 'authorized' AND capture_claim IS NOT NULL)"
    )
    op.drop_index(_INDEX, table_name=_PAYMENTS)
    with op.batch_alter_table(_PAYMENTS) as batch:
        batch.drop_column("capture_claimed_at")
        batch.drop_column("capture_claim")

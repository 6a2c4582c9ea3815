"""FX: a conversion claims its quote (`claimed_at`, with the two accounts) before the
ledger moves money, and marks it used (`used_at`) once its legs are in the ledger, so a
conversion interrupted between the two is finished by a retry between the same accounts,
or completed or given back by recovery, instead of leaving the quote used with nothing
converted. The partial index serves recovery's search for claims a crash left (it holds
claimed quotes only).

Revision ID: 0034_fx_quote_claims
Revises: 0033_tier_limits
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034_fx_quote_claims"
down_revision = "0033_tier_limits"
branch_labels = None
depends_on = None

_QUOTES = "fx_quotes"
_INDEX = "ix_fx_quotes_claimed_at"
_CLAIMED = sa.text("claimed_at IS NOT NULL")


def upgrade() -> None:
    op.add_column(_QUOTES, sa.Column("claimed_at", sa.BigInteger(), nullable=True))
    op.create_index(
        _INDEX,
        _QUOTES,
        ["claimed_at"],
        postgresql_where=_CLAIMED,
        sqlite_where=_CLAIMED,
    )


def downgrade() -> None:
    # The older release has no claimed state: a claim still open becomes what that release
    # made of it, a used quote (`used_at` from the claim time, its accounts kept), which a
    # retry completes if its legs are in the ledger, and which otherwise stays used.
    op.execute(
        f"UPDATE {_QUOTES} SET used_at = claimed_at"
        " WHERE claimed_at IS NOT NULL AND used_at IS NULL"
    )
    op.drop_index(_INDEX, table_name=_QUOTES)
    with op.batch_alter_table(_QUOTES) as batch:
        batch.drop_column("claimed_at")

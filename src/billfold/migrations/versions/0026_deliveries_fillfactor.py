"""Webhook deliveries leave half of each page free (PostgreSQL): the sender's lease, the
one update of a delivery that touches no indexed column, then stays on its page as a HOT
update instead of a new row version with an entry in each of the table's five indexes.
Pages written before this keep their fill; new ones take the setting.

Revision ID: 0026_deliveries_fillfactor
Revises: 0025_risk_model_promotion
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0026_deliveries_fillfactor"
down_revision = "0025_risk_model_promotion"
branch_labels = None
depends_on = None

_TABLE = "events_webhook_deliveries"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_TABLE} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_TABLE} RESET (fillfactor)")

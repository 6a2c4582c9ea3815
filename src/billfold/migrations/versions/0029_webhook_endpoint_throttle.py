"""Webhook endpoints can be throttled: a receiver that answers 429, 502, 503 or 504 is sent
nothing until `throttled_until` (Standard Webhooks: those answers ask the sender to
throttle), and `throttle_streak` counts such answers in a row, so the pause grows while
they go on and ends with the first success.

Revision ID: 0029_webhook_endpoint_throttle
Revises: 0028_deliveries_pending_indexes
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_webhook_endpoint_throttle"
down_revision = "0028_deliveries_pending_indexes"
branch_labels = None
depends_on = None

_TABLE = "events_webhook_endpoints"


def upgrade() -> None:
    op.add_column(_TABLE, sa.Column("throttled_until", sa.BigInteger(), nullable=True))
    op.add_column(
        _TABLE,
        sa.Column("throttle_streak", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column("throttle_streak")
        batch.drop_column("throttled_until")

"""Webhook endpoints remember when their receiver's failures began (`failing_since`, None
once an attempt succeeds), so one that fails every attempt for
`BILLFOLD_WEBHOOKS_DISABLE_AFTER_DAYS` is disabled (Standard Webhooks: delivery that fails
consistently over a long period should stop, and the consumer be told some other way).

Revision ID: 0030_webhook_failing_since
Revises: 0029_webhook_endpoint_throttle
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030_webhook_failing_since"
down_revision = "0029_webhook_endpoint_throttle"
branch_labels = None
depends_on = None

_TABLE = "events_webhook_endpoints"


def upgrade() -> None:
    op.add_column(_TABLE, sa.Column("failing_since", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column("failing_since")

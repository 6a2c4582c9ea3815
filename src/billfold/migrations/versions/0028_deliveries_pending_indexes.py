"""Webhook deliveries: the due and order indexes hold pending deliveries only, and an index
on `completed_at` holds the completed ones, for the retention purge.

A delivery's completion changes `status`, which those indexes hold, so it is never a HOT
update: the new row version took an entry in every index, one of them (endpoint,
aggregate, seq) on a random page of an index as large as the table, to record a state no
query looks for there (the claim, the order check and the fan-out's look for earlier
pending deliveries ask only for `status = 'pending'`). Partial, they take no entry for a
completed version and stay as small as the backlog, so the fan-out's inserts land on cached
pages too. The completion's one new entry instead is at the right edge of `completed_at`.

Revision ID: 0028_deliveries_pending_indexes
Revises: 0027_deliveries_event_index
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028_deliveries_pending_indexes"
down_revision = "0027_deliveries_event_index"
branch_labels = None
depends_on = None

_TABLE = "events_webhook_deliveries"
_DUE = "ix_events_webhook_deliveries_due"
_ORDER = "ix_events_webhook_deliveries_order"
_COMPLETED = "ix_events_webhook_deliveries_completed"
_DUE_COLUMNS = ["status", "next_attempt_at"]
_ORDER_COLUMNS = ["endpoint_id", "aggregate_id", "event_seq"]
_PENDING = sa.text("status = 'pending'")
_COMPLETED_ONLY = sa.text("status IN ('succeeded', 'dead')")


def upgrade() -> None:
    op.drop_index(_DUE, table_name=_TABLE)
    op.drop_index(_ORDER, table_name=_TABLE)
    op.create_index(_DUE, _TABLE, _DUE_COLUMNS, postgresql_where=_PENDING, sqlite_where=_PENDING)
    op.create_index(
        _ORDER, _TABLE, _ORDER_COLUMNS, postgresql_where=_PENDING, sqlite_where=_PENDING
    )
    op.create_index(
        _COMPLETED,
        _TABLE,
        ["completed_at"],
        postgresql_where=_COMPLETED_ONLY,
        sqlite_where=_COMPLETED_ONLY,
    )


def downgrade() -> None:
    op.drop_index(_COMPLETED, table_name=_TABLE)
    op.drop_index(_ORDER, table_name=_TABLE)
    op.drop_index(_DUE, table_name=_TABLE)
    op.create_index(_ORDER, _TABLE, _ORDER_COLUMNS)
    op.create_index(_DUE, _TABLE, _DUE_COLUMNS)

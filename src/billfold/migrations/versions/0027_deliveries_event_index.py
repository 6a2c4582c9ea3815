"""Webhook deliveries lose their index on `event_id`: no query reads deliveries by event (a
replay looks the event up in the outbox; the delivery log is paged by endpoint), and every
delivery paid for it twice: once when the fan-out wrote it, again when it completed (that
update changes `status`, which the due index holds, so it is never HOT and every index
takes a new entry).

Revision ID: 0027_deliveries_event_index
Revises: 0026_deliveries_fillfactor
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0027_deliveries_event_index"
down_revision = "0026_deliveries_fillfactor"
branch_labels = None
depends_on = None

_TABLE = "events_webhook_deliveries"
_INDEX = "ix_events_webhook_deliveries_event_id"


def upgrade() -> None:
    op.drop_index(_INDEX, table_name=_TABLE)


def downgrade() -> None:
    op.create_index(_INDEX, _TABLE, ["event_id"])

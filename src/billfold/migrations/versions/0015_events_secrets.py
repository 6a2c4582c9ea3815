"""Events: webhook endpoints may take several events per request (`batch_size_max`).

Endpoint secrets keep their column: a sealed secret (`enc1:…`, see
`billfold.events.secrets`) fits in its 128 characters.

Revision ID: 0015_events_secrets
Revises: 0017_spend_time
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_events_secrets"
down_revision = "0017_spend_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events_webhook_endpoints") as table:
        table.add_column(
            sa.Column("batch_size_max", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("events_webhook_endpoints") as table:
        table.drop_column("batch_size_max")

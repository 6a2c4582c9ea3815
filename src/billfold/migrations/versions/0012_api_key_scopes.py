"""Identity: room for every scope on an API key (each domain added some; 200 characters no
longer held them all).

Revision ID: 0012_api_key_scopes
Revises: 0011_payments
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_api_key_scopes"
down_revision = "0011_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_api_keys") as table:
        table.alter_column(
            "scopes", existing_type=sa.String(200), type_=sa.String(1000), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_api_keys") as table:
        table.alter_column(
            "scopes", existing_type=sa.String(1000), type_=sa.String(200), existing_nullable=False
        )

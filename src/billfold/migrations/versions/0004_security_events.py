"""Identity: the append-only security event log.

Revision ID: 0004_security_events
Revises: 0003_idempotency
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_security_events"
down_revision = "0003_idempotency"
branch_labels = None
depends_on = None

TABLE = "identity_security_events"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid),
        sa.Column("occurred_at", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("subject_id", sa.String(64)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.CheckConstraint(
            "actor_type IN ('api_key', 'operator', 'user', 'system')", name="actor_type"
        ),
    )
    op.create_index(
        "ix_identity_security_events_tenant_id_occurred_at", TABLE, ["tenant_id", "occurred_at"]
    )
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE}"
                f" BEGIN SELECT RAISE(ABORT, '{TABLE} rows are immutable'); END"
            )
        return
    op.execute(
        f"""
        CREATE FUNCTION {TABLE}_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{TABLE} rows are immutable'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON {TABLE}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_immutable()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_change ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_immutable()")
    op.drop_table(TABLE)

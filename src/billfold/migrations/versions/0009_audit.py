"""Audit: the hash-chained audit log, its chain heads and its signed checkpoints.

Revision ID: 0009_audit
Revises: 0008_keys_privacy
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_audit"
down_revision = "0008_keys_privacy"
branch_labels = None
depends_on = None

HEADS = "audit_chain_heads"
ENTRIES = "audit_entries"
CHECKPOINTS = "audit_checkpoints"
IMMUTABLE = (ENTRIES, CHECKPOINTS)


def _hash(name: str) -> sa.Column[bytes]:
    return sa.Column(name, sa.LargeBinary(32), nullable=False)


def upgrade() -> None:
    op.create_table(
        HEADS,
        sa.Column("chain_id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        _hash("head_hash"),
        sa.Column("checkpoint_number", sa.BigInteger, nullable=False),
        sa.Column("checkpoint_sequence", sa.BigInteger, nullable=False),
        _hash("checkpoint_hash"),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=f"pk_{HEADS}"),
    )
    op.create_table(
        ENTRIES,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chain_id", sa.Uuid, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.Uuid),
        sa.Column("occurred_at", sa.BigInteger, nullable=False),
        sa.Column("actor_type", sa.String(16)),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128)),
        sa.Column("source_ip", sa.String(45)),
        sa.Column("user_agent", sa.String(256)),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("detail", sa.Text),
        _hash("previous_hash"),
        _hash("entry_hash"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{ENTRIES}"),
        sa.UniqueConstraint("chain_id", "sequence", name=f"uq_{ENTRIES}_chain_id"),
    )
    op.create_table(
        CHECKPOINTS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("chain_id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("first_sequence", sa.BigInteger, nullable=False),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        _hash("root_hash"),
        _hash("head_hash"),
        _hash("previous_hash"),
        _hash("checkpoint_hash"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{CHECKPOINTS}"),
        sa.UniqueConstraint("chain_id", "number", name=f"uq_{CHECKPOINTS}_chain_id"),
    )
    for table in IMMUTABLE:
        _refuse_changes(table)


def _refuse_changes(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
            )
        return
    op.execute(
        f"""
        CREATE FUNCTION {table}_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{table} rows are immutable'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {table}_immutable()"
    )


def downgrade() -> None:
    for table in IMMUTABLE:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_immutable()")
        op.drop_table(table)
    op.drop_table(HEADS)

"""Events: the outbox log, channel cursors, webhook endpoints, deliveries and attempts, and
inbound provider notifications.

Revision ID: 0010_events
Revises: 0009_audit
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_events"
down_revision = "0009_audit"
branch_labels = None
depends_on = None

OUTBOX = "events_outbox"
CURSORS = "events_cursors"
ENDPOINTS = "events_webhook_endpoints"
DELIVERIES = "events_webhook_deliveries"
ATTEMPTS = "events_webhook_attempts"
INBOUND = "events_inbound"


def upgrade() -> None:
    op.create_table(
        OUTBOX,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("aggregate_id", sa.Uuid, nullable=False),
        sa.Column("partition", sa.SmallInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("occurred_at", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name=f"pk_{OUTBOX}"),
        sa.UniqueConstraint("seq", name=f"uq_{OUTBOX}_seq"),
        sa.CheckConstraint("mode IN ('test', 'live')", name=f"ck_{OUTBOX}_mode"),
    )
    op.create_index(f"ix_{OUTBOX}_partition_seq", OUTBOX, ["partition", "seq"])
    op.create_index(f"ix_{OUTBOX}_tenant_id_mode_seq", OUTBOX, ["tenant_id", "mode", "seq"])
    op.create_index(f"ix_{OUTBOX}_aggregate_id_seq", OUTBOX, ["aggregate_id", "seq"])
    op.create_index(
        f"ix_{OUTBOX}_unsequenced",
        OUTBOX,
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )
    op.create_table(
        CURSORS,
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("partition", sa.SmallInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("channel", "partition", name=f"pk_{CURSORS}"),
    )
    _create_webhooks()
    _create_inbound()


def _create_webhooks() -> None:
    op.create_table(
        ENDPOINTS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("disabled_reason", sa.String(256)),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128)),
        sa.Column("previous_secret_expires_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{ENDPOINTS}"),
        sa.CheckConstraint("mode IN ('test', 'live')", name=f"ck_{ENDPOINTS}_mode"),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name=f"ck_{ENDPOINTS}_status"),
    )
    op.create_index(f"ix_{ENDPOINTS}_tenant_id", ENDPOINTS, ["tenant_id"])
    op.create_table(
        DELIVERIES,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("endpoint_id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("aggregate_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("leased_until", sa.BigInteger),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("replay", sa.SmallInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("completed_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name=f"pk_{DELIVERIES}"),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'dead')", name=f"ck_{DELIVERIES}_status"
        ),
    )
    op.create_index(f"ix_{DELIVERIES}_due", DELIVERIES, ["status", "next_attempt_at"])
    op.create_index(
        f"ix_{DELIVERIES}_order", DELIVERIES, ["endpoint_id", "aggregate_id", "event_seq"]
    )
    op.create_index(f"ix_{DELIVERIES}_endpoint_id_id", DELIVERIES, ["endpoint_id", "id"])
    op.create_index(f"ix_{DELIVERIES}_event_id", DELIVERIES, ["event_id"])
    op.create_table(
        ATTEMPTS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("delivery_id", sa.Uuid, nullable=False),
        sa.Column("attempted_at", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(256)),
        sa.Column("response_body", sa.String(4096)),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{ATTEMPTS}"),
    )
    op.create_index(f"ix_{ATTEMPTS}_delivery_id", ATTEMPTS, ["delivery_id"])


def _create_inbound() -> None:
    op.create_table(
        INBOUND,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.String(1024)),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("processed_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name=f"pk_{INBOUND}"),
        sa.CheckConstraint(
            "status IN ('received', 'processed', 'failed')", name=f"ck_{INBOUND}_status"
        ),
    )
    op.create_index(
        f"uq_{INBOUND}_source_external_id", INBOUND, ["source", "external_id"], unique=True
    )
    op.create_index(f"ix_{INBOUND}_due", INBOUND, ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in (INBOUND, ATTEMPTS, DELIVERIES, ENDPOINTS, CURSORS, OUTBOX):
        op.drop_table(table)

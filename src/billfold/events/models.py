"""The events domain's tables, on the shared `billfold.kit.orm.Base`.

- `events_outbox`: the event log. Domains write a row in their own transaction
  (`billfold.events.outbox.emit`); the sequencer copies ledger transfers in. A row has no
  `seq` until the sequencer numbers it; channels then tail it by `seq`.
- `events_cursors`: how far each (channel, partition) has delivered, and the sequencer's
  position in the ledger (its row is also the sequencer's lock).
- `events_webhook_endpoints`, `events_webhook_deliveries`, `events_webhook_attempts`:
  per-tenant endpoints, one delivery per (event, endpoint) with its retry state, and the log
  of every attempt with the truncated response.
- `events_inbound`: provider notifications, stored first and processed by the worker.

Times are integer nanoseconds since the epoch, as everywhere in Billfold.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "EventCursor",
    "InboundEvent",
    "OutboxEvent",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]


class OutboxEvent(Base):
    """One event: a state change, recorded in the transaction that made it."""

    __tablename__ = "events_outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The event id (`evt_…`); deterministic for ledger transfers, so a copy is the same."""
    tenant_id: Mapped[uuid.UUID]
    """The public tenant the event belongs to."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live: a webhook endpoint of one mode never sees the other's events."""
    type: Mapped[str] = mapped_column(String(128))
    """Versioned CloudEvents type, e.g. com.billfold.transfer.posted.v1."""
    subject: Mapped[str] = mapped_column(String(128))
    """The public id of the object the event is about (CloudEvents `subject`)."""
    aggregate_id: Mapped[uuid.UUID]
    """The object whose events must stay in order (a pending transfer and its post share one)."""
    partition: Mapped[int] = mapped_column(SmallInteger)
    """A stable hash of `aggregate_id`: one worker at a time delivers a partition."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The payload documented for `type`."""
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    """When the change was made (the ledger timestamp for transfers)."""
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """Position in the log, assigned by the sequencer in commit order; NULL until then."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("ix_events_outbox_partition_seq", "partition", "seq"),
        Index("ix_events_outbox_tenant_id_mode_seq", "tenant_id", "mode", "seq"),
        Index("ix_events_outbox_aggregate_id_seq", "aggregate_id", "seq"),
        Index(
            "ix_events_outbox_unsequenced",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )


class EventCursor(Base):
    """How far one channel has delivered one partition (or the sequencer has read)."""

    __tablename__ = "events_cursors"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    """inprocess, nats, webhooks, or sequencer."""
    partition: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    """The partition (0 for the sequencer)."""
    position: Mapped[int] = mapped_column(BigInteger)
    """The last `seq` delivered (the sequencer: the last ledger timestamp copied)."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When the position last moved."""


class WebhookEndpoint(Base):
    """Where a tenant wants its events POSTed, signed per Standard Webhooks."""

    __tablename__ = "events_webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The endpoint id (`whe_…`)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The owning tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """The mode of the events it receives."""
    url: Mapped[str] = mapped_column(String(2048))
    """http(s) URL; refused when it resolves to a private address (unless allowed)."""
    description: Mapped[str] = mapped_column(String(256))
    """Free text for the tenant."""
    event_types: Mapped[list[str]] = mapped_column(JSON)
    """Event types delivered; empty means every type."""
    status: Mapped[str] = mapped_column(String(8))
    """enabled or disabled."""
    batch_size_max: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    """Most events one request carries: 1 sends each event alone (a CloudEvents object);
    more sends up to that many due events at once (a CloudEvents JSON batch, an array)."""
    disabled_reason: Mapped[str | None] = mapped_column(String(256))
    """Why it was disabled (e.g. the receiver answered 410 Gone)."""
    secret: Mapped[str] = mapped_column(String(128))
    """The current signing secret, whsec_…, or its ciphertext (`enc1:…`) when a keystore
    is configured (`billfold.events.secrets`)."""
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    """The secret before the last rotation, still signing until `previous_secret_expires_at`."""
    previous_secret_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the previous secret stops signing."""
    throttled_until: Mapped[int | None] = mapped_column(BigInteger)
    """Nothing is sent before this (ns): the receiver answered 429, 502, 503 or 504."""
    throttle_streak: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Such answers in a row; the first success ends the streak."""
    failing_since: Mapped[int | None] = mapped_column(BigInteger)
    """When the first of its attempts since the last success failed (None: the last attempt
    succeeded); failing for `webhooks_disable_after_days` disables it."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was created."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When it last changed."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("status IN ('enabled', 'disabled')", name="status"),
    )


_PENDING = text("status = 'pending'")
_COMPLETED = text("status IN ('succeeded', 'dead')")


class WebhookDelivery(Base):
    """One event to one endpoint, until it succeeds or is dead-lettered."""

    __tablename__ = "events_webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """Deterministic from (event, endpoint) for the first delivery; new for a replay."""
    endpoint_id: Mapped[uuid.UUID]
    """The endpoint."""
    tenant_id: Mapped[uuid.UUID]
    """The endpoint's tenant."""
    event_id: Mapped[uuid.UUID]
    """The event (its id is the `webhook-id` header)."""
    event_seq: Mapped[int] = mapped_column(BigInteger)
    """The event's position: a delivery waits for the endpoint's earlier ones of its aggregate."""
    aggregate_id: Mapped[uuid.UUID]
    """The event's aggregate."""
    status: Mapped[str] = mapped_column(String(10))
    """pending, succeeded or dead (dead-lettered after the last attempt, or 410 Gone)."""
    attempts: Mapped[int] = mapped_column(Integer)
    """Attempts made so far."""
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    """When the next attempt is due."""
    leased_until: Mapped[int | None] = mapped_column(BigInteger)
    """A worker sending it holds it until then; after, another may retry it."""
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    """The HTTP status of the last attempt, if it got one."""
    replay: Mapped[int] = mapped_column(SmallInteger)
    """1 for a manual replay, 0 for the first delivery."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was created."""
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it succeeded or was dead-lettered: when the receiver's answer (or the last
    failure) came back, not when the worker recorded it."""

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'dead')", name="status"),
        # Pending deliveries only (migration 0028): every query of these asks for
        # `status = 'pending'`, and a completion (never HOT: it changes `status`) then
        # adds no entry to them, only one at the right edge of the completed index.
        Index(
            "ix_events_webhook_deliveries_due",
            "status",
            "next_attempt_at",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        Index(
            "ix_events_webhook_deliveries_order",
            "endpoint_id",
            "aggregate_id",
            "event_seq",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        Index(
            "ix_events_webhook_deliveries_completed",
            "completed_at",
            postgresql_where=_COMPLETED,
            sqlite_where=_COMPLETED,
        ),
        Index("ix_events_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # No index on event_id (migration 0027): nothing reads deliveries by event.
        # Half of each page free (migration 0026): the lease is then a HOT update.
        {"postgresql_with": {"fillfactor": 50}},
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "events_webhook_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The attempt id."""
    delivery_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The delivery."""
    attempted_at: Mapped[int] = mapped_column(BigInteger)
    """When the request was sent."""
    status_code: Mapped[int | None] = mapped_column(Integer)
    """The response status, or NULL when none came (timeout, refused, SSRF)."""
    error: Mapped[str | None] = mapped_column(String(256))
    """Why no response, or why it counted as a failure."""
    response_body: Mapped[str | None] = mapped_column(String(4096))
    """The start of the response body, truncated."""
    duration_ms: Mapped[int] = mapped_column(Integer)
    """How long the attempt took."""


class InboundEvent(Base):
    """A notification from a provider: stored first, processed once by the worker."""

    __tablename__ = "events_inbound"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """Our id for it."""
    source: Mapped[str] = mapped_column(String(64))
    """Who sent it (a handler is registered per source)."""
    external_id: Mapped[str] = mapped_column(String(255))
    """The sender's event id: unique per source, so a resend is stored once."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The notification as received (already authenticated by the receiving route)."""
    status: Mapped[str] = mapped_column(String(10))
    """received, processed or failed (after the last attempt)."""
    attempts: Mapped[int] = mapped_column(Integer)
    """Processing attempts so far."""
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    """When the next attempt is due."""
    last_error: Mapped[str | None] = mapped_column(String(1024))
    """The last processing error."""
    received_at: Mapped[int] = mapped_column(BigInteger)
    """When it was stored."""
    processed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a handler processed it."""

    __table_args__ = (
        CheckConstraint("status IN ('received', 'processed', 'failed')", name="status"),
        Index("uq_events_inbound_source_external_id", "source", "external_id", unique=True),
        Index("ix_events_inbound_due", "status", "next_attempt_at"),
    )

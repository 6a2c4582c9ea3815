"""The former store of inbound provider notifications (`connectors_notifications`): no longer
written or read since they go through `billfold.events.inbound` (issue 5). The model stays
so the schema and its migration keep matching; the table can be dropped later."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["ProviderNotification"]


class ProviderNotification(Base):
    """One notification as received: unique by (provider, event id), so a redelivery is
    recognised; `processed_at` is set once its effect is recorded."""

    __tablename__ = "connectors_notifications"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    provider: Mapped[str] = mapped_column(String(32))
    """The provider's name, e.g. sandbox_card."""
    event_id: Mapped[str] = mapped_column(String(64))
    """The provider's id of the event; a redelivery carries the same."""
    event_type: Mapped[str] = mapped_column(String(32))
    """charge.succeeded, payout.failed, dispute.opened, …"""
    reference: Mapped[str] = mapped_column(String(64))
    """The payment id Billfold gave the provider."""
    body: Mapped[str] = mapped_column(Text)
    """The verified body, exactly as received."""
    received_at: Mapped[int] = mapped_column(BigInteger)
    """When it first arrived, ns since the epoch."""
    processed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When its effect was recorded; NULL until then."""
    outcome: Mapped[str | None] = mapped_column(String(64))
    """What processing did: applied, ignored_stale, unknown_payment, …"""

    __table_args__ = (
        Index("uq_connectors_notifications_provider_event_id", "provider", "event_id", unique=True),
    )

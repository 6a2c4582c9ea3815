"""Queries of stored notifications."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.connectors.models import ProviderNotification
from billfold.connectors.types import Notification
from billfold.kit.ids import new_id
from billfold.kit.upsert import insert_if_absent

__all__ = ["NotificationRepository"]


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def store(
        self, *, provider: str, notification: Notification, body: bytes
    ) -> ProviderNotification:
        """The stored notification: this one, or the earlier delivery of the same event."""
        await insert_if_absent(
            self._session,
            ProviderNotification,
            {
                "id": new_id(),
                "provider": provider,
                "event_id": notification.event_id,
                "event_type": notification.type.value,
                "reference": notification.reference,
                "body": body.decode("utf-8", errors="replace"),
                "received_at": time.time_ns(),
                "processed_at": None,
                "outcome": None,
            },
        )
        statement = select(ProviderNotification).where(
            ProviderNotification.provider == provider,
            ProviderNotification.event_id == notification.event_id,
        )
        return (await self._session.execute(statement)).scalar_one()

    async def get(self, notification_id: uuid.UUID) -> ProviderNotification | None:
        return await self._session.get(ProviderNotification, notification_id)

    async def mark_processed(self, *, notification_id: uuid.UUID, outcome: str) -> None:
        await self._session.execute(
            update(ProviderNotification)
            .where(
                ProviderNotification.id == notification_id,
                ProviderNotification.processed_at.is_(None),
            )
            .values(processed_at=time.time_ns(), outcome=outcome)
        )

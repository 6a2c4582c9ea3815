"""Security events about end users, recorded through identity's append-only log."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import ActorType, SecurityEventType, record_security_event
from billfold.identity.users.types import USER_ID_PREFIX
from billfold.kit.ids import format_id

__all__ = ["record_user_event"]


async def record_user_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    event_type: SecurityEventType,
    now_ns: int,
    actor_type: ActorType = ActorType.USER,
    actor_id: str | None = None,
    actor_unproven: bool = False,
    detail: Mapping[str, str | int | bool | None] | None = None,
) -> None:
    """One event whose subject is the user. The actor defaults to the user themselves,
    unless ``actor_unproven`` (a failed sign-in: whoever tried is not known to be them)."""
    subject = None if user_id is None else format_id(USER_ID_PREFIX, user_id)
    if actor_type is ActorType.USER and actor_id is None and not actor_unproven:
        actor_id = subject
    await record_security_event(
        session,
        tenant_id=tenant_id,
        event_type=event_type,
        actor_type=actor_type,
        actor_id=actor_id,
        occurred_at=now_ns,
        subject_id=subject,
        detail=detail,
    )

"""Throttling sign-in per account: after LOGIN_FAILURES_MAX consecutive failures (wrong
password or wrong second factor) the account is locked for LOCK_DURATION_NS.

While locked every attempt is refused with the same answer as a wrong password, so the
lock reveals nothing an attacker could use to tell accounts apart; attempts while locked
are not counted, so the lock ends when it said it would. The lock is the same for every
path that checks a password or a second factor, so no path offers unthrottled guesses.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.repository import TenantRepository
from billfold.identity.security_events import SecurityEventType
from billfold.identity.types import Mode
from billfold.identity.users.errors import Aftermath
from billfold.identity.users.events import record_user_event
from billfold.identity.users.models import EndUser
from billfold.identity.users.repository import UserRepository
from billfold.kit.clock import NANOSECONDS_PER_SECOND

__all__ = [
    "LOCK_DURATION_NS",
    "LOGIN_FAILURES_MAX",
    "failure_aftermath",
    "is_locked",
    "unknown_user_aftermath",
]

LOGIN_FAILURES_MAX = 5
LOCK_DURATION_NS = 15 * 60 * NANOSECONDS_PER_SECOND


def is_locked(user: EndUser, *, now_ns: int) -> bool:
    return user.locked_until is not None and user.locked_until > now_ns


def failure_aftermath(
    user: EndUser,
    *,
    now_ns: int,
    reason: str,
    stage: str,
    while_locked: bool = False,
    also: Aftermath | None = None,
) -> Aftermath:
    """Count the failure towards the lock (unless it came ``while_locked``) and record it:
    ``login.failed`` for a password, ``mfa.failed`` for a second factor. The event's
    ``locked`` says whether the account is locked after it."""
    tenant_id, user_id = user.tenant_id, user.id
    event_type = SecurityEventType.MFA_FAILED if stage == "mfa" else SecurityEventType.LOGIN_FAILED

    async def record(session: AsyncSession) -> None:
        locked = while_locked
        if not while_locked:
            locked = await UserRepository(session).count_failure(
                user_id=user_id,
                now_ns=now_ns,
                failures_max=LOGIN_FAILURES_MAX,
                locked_until=now_ns + LOCK_DURATION_NS,
            )
        if also is not None:
            await also(session)
        await record_user_event(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            event_type=event_type,
            now_ns=now_ns,
            actor_unproven=True,
            detail={"reason": reason, "stage": stage, "locked": locked},
        )

    return record


def unknown_user_aftermath(*, tenant_id: uuid.UUID, mode: Mode, now_ns: int) -> Aftermath:
    """Record a sign-in naming no user of an existing tenant (the identifier itself is not
    recorded: it may be a mistyped password)."""

    async def record(session: AsyncSession) -> None:
        if await TenantRepository(session).get(tenant_id) is None:
            return  # no tenant to file it under: nothing anyone could act on
        await record_user_event(
            session,
            tenant_id=tenant_id,
            user_id=None,
            event_type=SecurityEventType.LOGIN_FAILED,
            now_ns=now_ns,
            actor_unproven=True,
            detail={"reason": "unknown_identifier", "stage": "password", "mode": mode.value},
        )

    return record

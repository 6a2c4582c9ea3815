"""Throttling sign-in per account: after LOGIN_FAILURES_MAX consecutive failures (wrong
password or wrong second factor) the account is locked for LOCK_DURATION_NS.

While locked every attempt is refused with the same answer as a wrong password, so the
lock reveals nothing an attacker could use to tell accounts apart; attempts while locked
are not counted, so the lock ends when it said it would. The lock is the same for every
path that checks a password or a second factor, so no path offers unthrottled guesses.

No guess at a secret (a password, a second factor, a step-up answer; a one-time code is a
small space, 10^6 TOTP codes) is checked before the failures committed ahead of it are
counted; otherwise concurrent guesses would all be checked before the first failure was
counted (RFC 4226 section 7.3, PSD2 RTS article 4(3)(b): at most five failed attempts in
a row). A second factor, a step-up answer or a password asked again is counted *before*
it is checked: :func:`reserve_attempt` commits the count in a unit of work of its own
(``work.run_attempt``, ``work.run_reauthenticated``), the check refunds it on success,
and a failure only locks the account if the count reached the limit. The sign-in's
password step instead locks the user's row while it checks and counts, in one unit of
work (``service.login``): an unknown identifier and a wrong password then make the same
writes, hence take the same time.
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
    "refund_attempt",
    "reserve_attempt",
    "settle_failure",
    "unknown_user_aftermath",
]

LOGIN_FAILURES_MAX = 5
LOCK_DURATION_NS = 15 * 60 * NANOSECONDS_PER_SECOND


def is_locked(user: EndUser, *, now_ns: int) -> bool:
    return user.locked_until is not None and user.locked_until > now_ns


async def reserve_attempt(session: AsyncSession, *, user_id: uuid.UUID, now_ns: int) -> bool:
    """Count an attempt before checking it; False when the account has no attempt left
    (locked, or its remaining attempts are in flight). Commit before the check."""
    return await UserRepository(session).reserve_attempt(
        user_id=user_id, now_ns=now_ns, failures_max=LOGIN_FAILURES_MAX
    )


async def refund_attempt(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Take back the attempt :func:`reserve_attempt` counted, once it succeeded."""
    await UserRepository(session).refund_attempt(user_id)


async def settle_failure(session: AsyncSession, *, user_id: uuid.UUID, now_ns: int) -> bool:
    """A reserved attempt failed: lock the account if its failures reached the limit."""
    return await UserRepository(session).lock_if_exhausted(
        user_id=user_id,
        now_ns=now_ns,
        failures_max=LOGIN_FAILURES_MAX,
        locked_until=now_ns + LOCK_DURATION_NS,
    )


def failure_aftermath(
    user: EndUser,
    *,
    now_ns: int,
    reason: str,
    stage: str,
    while_locked: bool = False,
    reserved: bool = False,
    also: Aftermath | None = None,
) -> Aftermath:
    """Count the failure towards the lock (unless it came ``while_locked``, or was counted
    already by :func:`reserve_attempt`: ``reserved``) and record it: ``login.failed`` for a
    password, ``mfa.failed`` for a second factor. The event's ``locked`` says whether this
    failure locked the account."""
    tenant_id, user_id = user.tenant_id, user.id
    event_type = SecurityEventType.MFA_FAILED if stage == "mfa" else SecurityEventType.LOGIN_FAILED

    async def record(session: AsyncSession) -> None:
        locked = while_locked
        if reserved and not while_locked:
            locked = await settle_failure(session, user_id=user_id, now_ns=now_ns)
        elif not while_locked:
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

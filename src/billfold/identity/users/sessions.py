"""Sessions: short-lived access tokens and rotating refresh tokens with reuse detection.

A sign-in starts a session, the *family* of every token rotated from it. Each refresh
spends the refresh token presented and returns a new access and refresh token. A refresh
token presented a second time means two parties hold it (the user and a thief, in either
order), so the whole family is revoked, the newest tokens included, and
``refresh_token.reused`` is recorded, once per family: whoever is legitimate signs in
again. An unspent
refresh token refused for any other reason (expired, its session revoked or ended, its
user disabled) is recorded once as ``refresh.failed``, with the reason. Revoking a session
ends the user's open step-ups (see :func:`_void_step_ups`).

Service functions take keyword arguments, flush and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import ActorType, SecurityEventType
from billfold.identity.types import Mode, TenantStatus
from billfold.identity.users.errors import (
    Aftermath,
    RefreshTokenInvalid,
    SessionNotFound,
    UserNotAuthenticated,
    with_aftermath,
)
from billfold.identity.users.events import record_user_event
from billfold.identity.users.models import EndUser, UserSession, UserToken
from billfold.identity.users.repository import (
    RefreshTokenRow,
    SessionRepository,
    StepUpRepository,
)
from billfold.identity.users.tokens import (
    TokenKind,
    hash_token,
    mint_token,
    token_hash_if_well_formed,
)
from billfold.identity.users.types import SESSION_ID_PREFIX, UserPrincipal
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.ids import format_id, new_id

__all__ = [
    "ACCESS_TOKEN_LIFETIME_NS",
    "REFRESHES_PER_SESSION_MAX",
    "REFRESH_TOKEN_LIFETIME_NS",
    "SESSIONS_PER_USER_MAX",
    "SESSION_LIFETIME_NS",
    "IssuedTokens",
    "authenticate_access_token",
    "list_sessions",
    "refresh_session",
    "revoke_all_sessions",
    "revoke_session",
    "start_session",
]

_MINUTE_NS = 60 * NANOSECONDS_PER_SECOND
_DAY_NS = 86_400 * NANOSECONDS_PER_SECOND
ACCESS_TOKEN_LIFETIME_NS = 15 * _MINUTE_NS
"""Short, because an access token is checked but never rotated: a leaked one dies soon."""
REFRESH_TOKEN_LIFETIME_NS = 14 * _DAY_NS
"""A session unused this long ends (idle timeout)."""
SESSION_LIFETIME_NS = 30 * _DAY_NS
"""A session ends this long after sign-in, however often it is refreshed."""
SESSIONS_PER_USER_MAX = 20
"""Usable sessions a user holds; signing in once more ends the oldest."""
REFRESHES_PER_SESSION_MAX = 10_000
"""Bounds the token rows one session accumulates (used refresh tokens are kept, to be
recognised if presented again); a client refreshing every 15 minutes needs 2,880."""


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new token pair; the tokens exist only here and are never stored."""

    session_id: uuid.UUID
    access_token: str
    access_token_expires_at: int
    refresh_token: str
    refresh_token_expires_at: int


def _token_pair(
    *, session_id: uuid.UUID, session_expires_at: int, now_ns: int
) -> tuple[IssuedTokens, list[UserToken]]:
    access, refresh = mint_token(TokenKind.ACCESS), mint_token(TokenKind.REFRESH)
    access_expires_at = min(now_ns + ACCESS_TOKEN_LIFETIME_NS, session_expires_at)
    refresh_expires_at = min(now_ns + REFRESH_TOKEN_LIFETIME_NS, session_expires_at)
    rows = [
        UserToken(
            id=new_id(),
            session_id=session_id,
            kind=kind,
            token_hash=hash_token(token),
            created_at=now_ns,
            expires_at=expires_at,
            used_at=None,
        )
        for kind, token, expires_at in (
            ("access", access, access_expires_at),
            ("refresh", refresh, refresh_expires_at),
        )
    ]
    issued = IssuedTokens(
        session_id=session_id,
        access_token=access,
        access_token_expires_at=access_expires_at,
        refresh_token=refresh,
        refresh_token_expires_at=refresh_expires_at,
    )
    return issued, rows


async def start_session(
    session: AsyncSession, *, user: EndUser, methods: str, now_ns: int
) -> IssuedTokens:
    """A new session for a user who just proved themselves with ``methods``."""
    sessions = SessionRepository(session)
    active = await sessions.list_active(user_id=user.id, now_ns=now_ns, limit=SESSIONS_PER_USER_MAX)
    if len(active) >= SESSIONS_PER_USER_MAX:
        oldest = [row.id for row in active[: len(active) - SESSIONS_PER_USER_MAX + 1]]
        await _revoke(session, user=user, session_ids=oldest, now_ns=now_ns, reason="session_limit")
    user_session = UserSession(
        id=new_id(),
        user_id=user.id,
        methods=methods,
        created_at=now_ns,
        expires_at=now_ns + SESSION_LIFETIME_NS,
        refreshed_at=None,
        refresh_count=0,
        revoked_at=None,
        revoked_reason=None,
    )
    issued, rows = _token_pair(
        session_id=user_session.id, session_expires_at=user_session.expires_at, now_ns=now_ns
    )
    await sessions.add(user_session)
    await sessions.add(*rows)
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.LOGIN_SUCCEEDED,
        now_ns=now_ns,
        detail={"methods": methods, "session_id": format_id(SESSION_ID_PREFIX, user_session.id)},
    )
    return issued


async def authenticate_access_token(
    session: AsyncSession, *, access_token: str, now_ns: int
) -> UserPrincipal:
    """The user an access token proves, or :class:`UserNotAuthenticated` for any failure."""
    token_hash = token_hash_if_well_formed(access_token, kind=TokenKind.ACCESS)
    row = None if token_hash is None else await SessionRepository(session).find_access(token_hash)
    if (
        row is None
        or row.token_expires_at <= now_ns
        or row.session_revoked_at is not None
        or row.session_expires_at <= now_ns
        or row.user_status != "active"
        or row.tenant_status != TenantStatus.ACTIVE.value
    ):
        raise UserNotAuthenticated()
    return UserPrincipal(
        tenant_id=row.tenant_id, mode=Mode(row.mode), user_id=row.user_id, session_id=row.session_id
    )


def _refusal(row: RefreshTokenRow, *, now_ns: int) -> str | None:
    """Why an unspent refresh token cannot be exchanged (the `reason` of `refresh.failed`),
    or None when it can."""
    if row.tenant_status != TenantStatus.ACTIVE.value:
        return "tenant_inactive"
    if row.user.status != "active":
        return "user_disabled"
    if row.session.revoked_at is not None:
        return "session_revoked"
    if row.session.expires_at <= now_ns:
        return "session_expired"
    if row.token.expires_at <= now_ns:
        return "expired"
    if row.session.refresh_count >= REFRESHES_PER_SESSION_MAX:
        return "refresh_limit"
    return None


async def refresh_session(
    session: AsyncSession, *, refresh_token: str, now_ns: int
) -> IssuedTokens:
    """Spend ``refresh_token`` for a new pair, or revoke its family if it was spent before.

    An unspent token that can no longer be exchanged is recorded as ``refresh.failed``
    (see :func:`_failure_aftermath`). A token Billfold never issued records nothing: no
    tenant is known to file it under, and a guess at 256 random bits is no signal."""
    token_hash = token_hash_if_well_formed(refresh_token, kind=TokenKind.REFRESH)
    sessions = SessionRepository(session)
    row = None if token_hash is None else await sessions.find_refresh(token_hash)
    if row is None:
        raise RefreshTokenInvalid()
    # Reuse is checked first: a spent token is a theft signal even if it has expired since.
    if row.token.used_at is not None or not await sessions.spend_refresh(
        token_id=row.token.id, now_ns=now_ns
    ):
        raise with_aftermath(RefreshTokenInvalid(), _reuse_aftermath(row, now_ns=now_ns))
    reason = _refusal(row, now_ns=now_ns)
    if reason is not None:
        raise with_aftermath(
            RefreshTokenInvalid(), _failure_aftermath(row, reason=reason, now_ns=now_ns)
        )
    user_session = row.session
    user_session.refresh_count += 1
    user_session.refreshed_at = now_ns
    await sessions.delete_expired_access_tokens(session_id=user_session.id, now_ns=now_ns)
    issued, rows = _token_pair(
        session_id=user_session.id, session_expires_at=user_session.expires_at, now_ns=now_ns
    )
    await sessions.add(*rows)
    return issued


def _failure_aftermath(row: RefreshTokenRow, *, reason: str, now_ns: int) -> Aftermath:
    """Record ``refresh.failed`` (the session and the reason, never the token) once per
    token: the token, which could never be exchanged again, is deleted with it, so
    presenting it again finds nothing and writes nothing. Each record therefore costs
    whoever provokes it a token Billfold issued. A suspended tenant's tokens are kept (the
    tenant may be reactivated) and record nothing: nobody acts on that tenant's log
    meanwhile, and each presentation would write again."""
    tenant_id, user_id = row.user.tenant_id, row.user.id
    session_id, token_id = row.session.id, row.token.id

    async def record(session: AsyncSession) -> None:
        if reason == "tenant_inactive":
            return
        if not await SessionRepository(session).discard_unused_refresh(token_id=token_id):
            return  # a concurrent presentation recorded it, or an exchange spent it
        await record_user_event(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            event_type=SecurityEventType.REFRESH_FAILED,
            now_ns=now_ns,
            actor_unproven=True,
            detail={"session_id": format_id(SESSION_ID_PREFIX, session_id), "reason": reason},
        )

    return record


def _reuse_aftermath(row: RefreshTokenRow, *, now_ns: int) -> Aftermath:
    """Revoke the family and record ``refresh_token.reused``, once per family: whoever
    presents its spent tokens again and again (each presentation costs no more than a
    request) writes nothing more, since the family is revoked already and the security
    team was told which one. A family revoked for another reason (a logout, an erasure)
    records its first reuse, which is still the sign of a stolen token."""
    tenant_id, user_id, session_id = row.user.tenant_id, row.user.id, row.session.id

    async def revoke_family(session: AsyncSession) -> None:
        if not await SessionRepository(session).revoke_for_reuse(
            session_id=session_id, now_ns=now_ns
        ):
            return  # an earlier or a concurrent reuse of this family recorded it
        await _void_step_ups(session, user_id=user_id, now_ns=now_ns)
        await record_user_event(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            event_type=SecurityEventType.REFRESH_TOKEN_REUSED,
            now_ns=now_ns,
            actor_type=ActorType.SYSTEM,
            detail={"session_id": format_id(SESSION_ID_PREFIX, session_id)},
        )

    return revoke_family


async def list_sessions(
    session: AsyncSession, *, principal: UserPrincipal, now_ns: int
) -> list[UserSession]:
    """The user's usable sessions, oldest first (at most SESSIONS_PER_USER_MAX)."""
    return await SessionRepository(session).list_active(
        user_id=principal.user_id, now_ns=now_ns, limit=SESSIONS_PER_USER_MAX
    )


async def revoke_session(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    session_id: uuid.UUID,
    now_ns: int,
    reason: str = "revoked",
) -> None:
    """End one of the user's sessions (``logout`` for their own); again changes nothing."""
    user_session = await SessionRepository(session).get_for_user(
        user_id=principal.user_id, session_id=session_id
    )
    if user_session is None:
        raise SessionNotFound()
    user = await session.get(EndUser, principal.user_id)
    if user is None:
        raise SessionNotFound()
    await _revoke(session, user=user, session_ids=[session_id], now_ns=now_ns, reason=reason)


async def _revoke(
    session: AsyncSession,
    *,
    user: EndUser,
    session_ids: list[uuid.UUID],
    now_ns: int,
    reason: str,
) -> None:
    revoked = await SessionRepository(session).revoke(
        session_ids=session_ids, now_ns=now_ns, reason=reason
    )
    if revoked:
        await _void_step_ups(session, user_id=user.id, now_ns=now_ns)
    for session_id in revoked:
        await record_user_event(
            session,
            tenant_id=user.tenant_id,
            user_id=user.id,
            event_type=SecurityEventType.SESSIONS_REVOKED,
            now_ns=now_ns,
            actor_type=ActorType.SYSTEM if reason == "session_limit" else ActorType.USER,
            detail={"session_id": format_id(SESSION_ID_PREFIX, session_id), "reason": reason},
        )


async def _void_step_ups(session: AsyncSession, *, user_id: uuid.UUID, now_ns: int) -> None:
    """A step-up answered in a session must die with it: whoever held that session (a
    thief whose family was revoked on reuse, a phone signed out remotely) could otherwise
    hand its token to another session. A step-up does not record its session, so every
    open step-up of the user ends: one in a live session is asked again, a small cost
    next to a payment authorised by a revoked session."""
    await StepUpRepository(session).void_open(user_id=user_id, now_ns=now_ns)


async def revoke_all_sessions(
    session: AsyncSession,
    *,
    user: EndUser,
    now_ns: int,
    actor_type: ActorType,
    actor_id: str | None = None,
) -> int:
    """End every session of ``user`` (the user's own request, or their tenant's)."""
    count = await SessionRepository(session).revoke_all(
        user_id=user.id, now_ns=now_ns, reason="revoked_all"
    )
    await _void_step_ups(session, user_id=user.id, now_ns=now_ns)
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.SESSIONS_REVOKED,
        now_ns=now_ns,
        actor_type=actor_type,
        actor_id=actor_id,
        detail={"reason": "revoked_all", "count": count},
    )
    return count

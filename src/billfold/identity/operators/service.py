"""Operators and their sessions: creating, listing, roles, status, sign-in, sign-out.

Functions take keyword arguments, flush through the repositories and never commit: the
caller's unit of work does, with the security event each change records, so both land
together or not at all. Everything a caller can reach is scoped by a tenant id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.credentials import hashes_match
from billfold.identity.errors import InvalidName, TenantNotFound, TenantSuspended
from billfold.identity.models import Tenant
from billfold.identity.operators.errors import (
    InvalidEmail,
    InvalidPassword,
    InvalidRoles,
    LastAdministrator,
    OperatorEmailTaken,
    OperatorLimitReached,
    OperatorNotAuthenticated,
    OperatorNotFound,
    SelfManagementForbidden,
)
from billfold.identity.operators.models import DISPLAY_NAME_LENGTH_MAX, EMAIL_LENGTH_MAX, Operator
from billfold.identity.operators.models import OperatorSession as OperatorSessionRow
from billfold.identity.operators.passwords import (
    DEFAULT_PASSWORDS,
    check_password_policy,
    new_one_time_password,
)
from billfold.identity.operators.permissions import Role, permissions_of
from billfold.identity.operators.repository import OperatorRepository, OperatorSessionRepository
from billfold.identity.operators.tokens import (
    hash_session_token,
    mint_session_token,
    parse_session_token,
)
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, Actor, OperatorPrincipal
from billfold.identity.passwords import Passwords
from billfold.identity.repository import TenantRepository
from billfold.identity.security_events import ActorType, SecurityEventType, record_security_event
from billfold.identity.types import TenantStatus
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import (
    InvalidCursor,
    Page,
    clamp_page_size,
    decode_cursor,
    encode_cursor,
)

__all__ = [
    "LOGIN_FAILURES_MAX",
    "LOGIN_LOCKOUT_NS",
    "OPERATORS_PER_TENANT_MAX",
    "SESSIONS_PER_OPERATOR_MAX",
    "SESSION_LIFETIME_NS",
    "CreatedOperator",
    "OperatorLogin",
    "change_password",
    "create_operator",
    "cursor_id",
    "get_operator",
    "list_operators",
    "log_in",
    "log_out",
    "normalize_email",
    "roles_of",
    "set_operator_roles",
    "set_operator_status",
    "verify_session",
]

OPERATORS_PER_TENANT_MAX = 1_000
SESSION_LIFETIME_NS = 60 * 60 * NANOSECONDS_PER_SECOND
"""A session token works for one hour, never extended: short-lived by design."""
SESSIONS_PER_OPERATOR_MAX = 10
"""Live sessions per operator; signing in again revokes the oldest beyond this."""
LOGIN_FAILURES_MAX = 10
LOGIN_LOCKOUT_NS = 15 * 60 * NANOSECONDS_PER_SECOND
"""After LOGIN_FAILURES_MAX failures in a row, sign-in is refused this long."""
_ADMIN_COUNT_SCANNED_MAX = OPERATORS_PER_TENANT_MAX
# Deliberately loose: an address is proven by mail, not by a regular expression.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class CreatedOperator:
    """A new operator, and its one-time password when one was generated (shown once)."""

    operator: Operator
    one_time_password: str | None


@dataclass(frozen=True, slots=True)
class OperatorLogin:
    """A successful sign-in: the session and the token, which exists only here."""

    operator: Operator
    session: OperatorSessionRow
    token: str


def normalize_email(email: str) -> str:
    """The stored form of an address: trimmed and lowercased, so one person has one row."""
    cleaned = email.strip().lower()
    if (
        len(cleaned) > EMAIL_LENGTH_MAX
        or not cleaned.isprintable()
        or not _EMAIL.fullmatch(cleaned)
    ):
        raise InvalidEmail(
            f"An email address looks like name@example.com ({EMAIL_LENGTH_MAX} max)."
        )
    return cleaned


def _roles_text(roles: Iterable[Role | str]) -> str:
    try:
        chosen = {Role(role) for role in roles}
    except ValueError as error:
        raise InvalidRoles(f"Roles are among: {', '.join(role.value for role in Role)}.") from error
    if not chosen:
        raise InvalidRoles("An operator needs at least one role.")
    return " ".join(sorted(role.value for role in chosen))


def roles_of(operator: Operator) -> frozenset[Role]:
    """The operator's roles; a name this version does not know grants nothing."""
    known = {role.value for role in Role}
    return frozenset(Role(name) for name in operator.roles.split() if name in known)


def _clean_display_name(display_name: str) -> str:
    cleaned = display_name.strip()
    if not 1 <= len(cleaned) <= DISPLAY_NAME_LENGTH_MAX or not cleaned.isprintable():
        raise InvalidName(
            f"A display name has 1 to {DISPLAY_NAME_LENGTH_MAX} printable characters."
        )
    return cleaned


async def create_operator(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    email: str,
    display_name: str,
    roles: Iterable[Role | str],
    password: str | None,
    actor: Actor,
    now_ns: int,
    passwords: Passwords = DEFAULT_PASSWORDS,
) -> CreatedOperator:
    """A new operator of an active tenant. Without ``password`` a one-time one is generated,
    returned once, and must be changed at first sign-in."""
    cleaned_email = normalize_email(email)
    roles_text = _roles_text(roles)
    cleaned_name = _clean_display_name(display_name)
    one_time_password = new_one_time_password() if password is None else None
    chosen_password = password if password is not None else one_time_password
    invariant(chosen_password is not None, "a password is given or generated")
    assert chosen_password is not None  # for mypy; the invariant above holds under -O
    check_password_policy(chosen_password, email=cleaned_email)
    await _require_room(session, tenant_id=tenant_id, email=cleaned_email)
    operator = Operator(
        id=new_id(),
        tenant_id=tenant_id,
        email=cleaned_email,
        display_name=cleaned_name,
        roles=roles_text,
        status="active",
        password_hash=await passwords.hash(chosen_password),
        password_change_required=password is None,
        failed_login_count=0,
        locked_until=None,
        created_at=now_ns,
        updated_at=now_ns,
    )
    try:
        await OperatorRepository(session).add(operator)
    except IntegrityError as error:  # a concurrent creation took the address first
        raise OperatorEmailTaken() from error
    await _record(
        session,
        operator=operator,
        event_type=SecurityEventType.OPERATOR_CREATED,
        actor=actor,
        now_ns=now_ns,
        detail={"roles": roles_text},
    )
    return CreatedOperator(operator=operator, one_time_password=one_time_password)


async def _require_room(session: AsyncSession, *, tenant_id: uuid.UUID, email: str) -> None:
    # Locked, so concurrent creations count each other's operators (see `get_for_update`).
    tenant = await TenantRepository(session).get_for_update(tenant_id)
    if tenant is None:
        raise TenantNotFound()
    if tenant.status != TenantStatus.ACTIVE.value:
        raise TenantSuspended("A suspended tenant gets no new operators.")
    operators = OperatorRepository(session)
    if await operators.get_by_email(tenant_id=tenant_id, email=email) is not None:
        raise OperatorEmailTaken()
    if await operators.count_for_tenant(tenant_id) >= OPERATORS_PER_TENANT_MAX:
        raise OperatorLimitReached(
            f"A tenant has at most {OPERATORS_PER_TENANT_MAX} operators.",
            limit=OPERATORS_PER_TENANT_MAX,
        )


async def _record(
    session: AsyncSession,
    *,
    operator: Operator,
    event_type: SecurityEventType,
    actor: Actor,
    now_ns: int,
    detail: dict[str, str | int | bool | None] | None = None,
    before: dict[str, str | int | bool | None] | None = None,
    after: dict[str, str | int | bool | None] | None = None,
) -> None:
    await record_security_event(
        session,
        tenant_id=operator.tenant_id,
        event_type=event_type,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        occurred_at=now_ns,
        subject_id=format_id(OPERATOR_ID_PREFIX, operator.id),
        detail=detail,
        before=before,
        after=after,
    )


async def get_operator(
    session: AsyncSession, *, tenant_id: uuid.UUID, operator_id: uuid.UUID
) -> Operator:
    """One of the tenant's operators; another tenant's is as absent as a missing one."""
    operator = await OperatorRepository(session).get_for_tenant(
        tenant_id=tenant_id, operator_id=operator_id
    )
    if operator is None:
        raise OperatorNotFound()
    return operator


async def list_operators(
    session: AsyncSession, *, tenant_id: uuid.UUID, cursor: str | None, limit: int | None
) -> Page[Operator]:
    """The tenant's operators, oldest first, one bounded page at a time."""
    page_size = clamp_page_size(limit)
    rows = await OperatorRepository(session).list_for_tenant(
        tenant_id=tenant_id,
        after_id=None if cursor is None else cursor_id(cursor),
        limit=page_size + 1,  # one more than asked says whether a next page exists
    )
    items = rows[:page_size]
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


def cursor_id(cursor: str) -> uuid.UUID:
    """The row id a listing cursor holds."""
    values = decode_cursor(cursor)
    if len(values) != 1 or not isinstance(values[0], str):
        raise InvalidCursor("The cursor is malformed.")
    try:
        return uuid.UUID(hex=values[0])
    except ValueError as error:
        raise InvalidCursor("The cursor is malformed.") from error


async def set_operator_roles(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal | None,
    tenant_id: uuid.UUID,
    operator_id: uuid.UUID,
    roles: Iterable[Role | str],
    actor: Actor,
    now_ns: int,
) -> Operator:
    """Replace an operator's roles. Nobody changes their own (no self-promotion), and the
    tenant keeps at least one active administrator."""
    roles_text = _roles_text(roles)
    operator = await _other_operator(
        session, principal=principal, tenant_id=tenant_id, operator_id=operator_id
    )
    if roles_text == operator.roles:
        return operator
    removes_admin = Role.ADMIN in roles_of(operator) and Role.ADMIN.value not in roles_text.split()
    if removes_admin and operator.status == "active":
        await _require_another_admin(session, tenant_id=tenant_id)
    before = operator.roles
    operator.roles = roles_text
    operator.updated_at = now_ns
    await session.flush()
    await _record(
        session,
        operator=operator,
        event_type=SecurityEventType.OPERATOR_ROLE_CHANGED,
        actor=actor,
        now_ns=now_ns,
        detail={"roles_before": before, "roles": roles_text},
        before={"roles": before},
        after={"roles": roles_text},
    )
    return operator


async def set_operator_status(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal | None,
    tenant_id: uuid.UUID,
    operator_id: uuid.UUID,
    active: bool,
    actor: Actor,
    now_ns: int,
    reason: str | None = None,
) -> Operator:
    """Enable or disable an operator; disabling ends every session it has at once.

    Either is an ``operator.disabled`` or ``operator.enabled`` security event (naming who
    acted, on whom, the status before and after, and the `reason` given, if any) in the
    same transaction: who may act in the back office is as much a security fact as a
    sign-in, and a reviewer of the log should not have to ask why. Disabling also records
    the sessions it ended (``sessions.revoked``), as a password change does."""
    operator = await _other_operator(
        session, principal=principal, tenant_id=tenant_id, operator_id=operator_id
    )
    status = "active" if active else "disabled"
    if operator.status == status:
        return operator
    if not active and Role.ADMIN in roles_of(operator):
        await _require_another_admin(session, tenant_id=tenant_id)
    before = operator.status
    operator.status = status
    operator.updated_at = now_ns
    await session.flush()
    detail: dict[str, str | int | bool | None] = {"status_before": before, "status": status}
    if reason is not None:
        detail["reason"] = reason
    revoked = 0
    if not active:
        revoked = await OperatorSessionRepository(session).revoke(
            operator_id=operator.id, now_ns=now_ns
        )
    await _record(
        session,
        operator=operator,
        event_type=SecurityEventType.OPERATOR_ENABLED
        if active
        else SecurityEventType.OPERATOR_DISABLED,
        actor=actor,
        now_ns=now_ns,
        detail=detail,
        before={"status": before},
        after={"status": status},
    )
    if not active:
        await _record(
            session,
            operator=operator,
            event_type=SecurityEventType.SESSIONS_REVOKED,
            actor=actor,
            now_ns=now_ns,
            detail={"reason": "operator_disabled", "sessions": revoked},
        )
    return operator


async def _other_operator(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal | None,
    tenant_id: uuid.UUID,
    operator_id: uuid.UUID,
) -> Operator:
    if principal is not None and principal.operator_id == operator_id:
        raise SelfManagementForbidden("Another administrator must change your roles or status.")
    return await get_operator(session, tenant_id=tenant_id, operator_id=operator_id)


async def _require_another_admin(session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
    """The change at hand removes one active admin: refuse it if none would be left."""
    roles = await OperatorRepository(session).roles_of_active(
        tenant_id=tenant_id, limit=_ADMIN_COUNT_SCANNED_MAX
    )
    admins = sum(1 for text in roles if Role.ADMIN.value in text.split())
    if admins <= 1:
        raise LastAdministrator("Make another operator an active admin first.")


async def log_in(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    email: str,
    password: str,
    now_ns: int,
    passwords: Passwords = DEFAULT_PASSWORDS,
) -> OperatorLogin | None:
    """A new session for the right email and password, or None, with the failure counted
    and recorded: the caller commits, then answers :class:`LoginFailed`. (Raising here
    would roll back the very records a failure must leave.)"""
    operator = await _login_candidate(session, tenant_id=tenant_id, email=email)
    if operator is None:
        await passwords.verify(None, password)
        await _record_login_failure(session, tenant_id=tenant_id, operator=None, now_ns=now_ns)
        return None
    genuine = await passwords.verify(operator.password_hash, password)
    usable = operator.status == "active" and not _locked(operator, now_ns)
    if not genuine or not usable:
        if not genuine:
            await _count_failure(session, operator, now_ns)
        await _record_login_failure(session, tenant_id=tenant_id, operator=operator, now_ns=now_ns)
        return None
    return await _open_session(
        session, operator=operator, password=password, now_ns=now_ns, passwords=passwords
    )


def _locked(operator: Operator, now_ns: int) -> bool:
    """Whether too many wrong passwords in a row lock the operator now."""
    return operator.locked_until is not None and operator.locked_until > now_ns


async def _count_failure(session: AsyncSession, operator: Operator, now_ns: int) -> None:
    """One more wrong password toward the lock (a sign-in's or a password change's)."""
    await OperatorRepository(session).record_failed_login(
        operator_id=operator.id,
        failures_max=LOGIN_FAILURES_MAX,
        locked_until_ns=now_ns + LOGIN_LOCKOUT_NS,
    )


async def _login_candidate(
    session: AsyncSession, *, tenant_id: uuid.UUID, email: str
) -> Operator | None:
    try:
        cleaned = normalize_email(email)
    except InvalidEmail:
        return None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status != TenantStatus.ACTIVE.value:
        return None
    return await OperatorRepository(session).get_by_email(tenant_id=tenant_id, email=cleaned)


async def _record_login_failure(
    session: AsyncSession, *, tenant_id: uuid.UUID, operator: Operator | None, now_ns: int
) -> None:
    # The address tried is not recorded: the log keeps facts, and an address is personal.
    subject = None if operator is None else format_id(OPERATOR_ID_PREFIX, operator.id)
    tenant = await session.get(Tenant, tenant_id)
    await record_security_event(
        session,
        tenant_id=None if tenant is None else tenant_id,
        event_type=SecurityEventType.LOGIN_FAILED,
        actor_type=ActorType.OPERATOR,
        actor_id=None,
        occurred_at=now_ns,
        subject_id=subject,
        detail={"known_operator": operator is not None},
    )


async def _open_session(
    session: AsyncSession,
    *,
    operator: Operator,
    password: str,
    now_ns: int,
    passwords: Passwords,
) -> OperatorLogin:
    operators = OperatorRepository(session)
    await operators.record_successful_login(operator.id)
    if passwords.needs_rehash(operator.password_hash):
        operator.password_hash = await passwords.hash(password)
    sessions = OperatorSessionRepository(session)
    live = await sessions.live_ids(
        operator_id=operator.id, now_ns=now_ns, limit=SESSIONS_PER_OPERATOR_MAX
    )
    if len(live) >= SESSIONS_PER_OPERATOR_MAX:
        oldest = live[SESSIONS_PER_OPERATOR_MAX - 1 :]
        await sessions.revoke(operator_id=operator.id, now_ns=now_ns, session_ids=oldest)
    session_id = new_id()
    token = mint_session_token(session_id)
    row = OperatorSessionRow(
        id=session_id,
        operator_id=operator.id,
        tenant_id=operator.tenant_id,
        secret_hash=hash_session_token(token),
        created_at=now_ns,
        expires_at=now_ns + SESSION_LIFETIME_NS,
        revoked_at=None,
    )
    await sessions.add(row)
    invariant(parse_session_token(token) == session_id, "a minted token parses back to its id")
    actor = Actor(
        actor_type=ActorType.OPERATOR, actor_id=format_id(OPERATOR_ID_PREFIX, operator.id)
    )
    await _record(
        session,
        operator=operator,
        event_type=SecurityEventType.LOGIN_SUCCEEDED,
        actor=actor,
        now_ns=now_ns,
    )
    return OperatorLogin(operator=operator, session=row, token=token)


async def verify_session(session: AsyncSession, *, token: str, now_ns: int) -> OperatorPrincipal:
    """The operator a presented token proves, or :class:`OperatorNotAuthenticated`."""
    session_id = parse_session_token(token)
    if session_id is None:
        raise OperatorNotAuthenticated()
    found = await OperatorSessionRepository(session).get_with_operator(session_id)
    if found is None:
        # Hash anyway, so an unknown id costs what a known one does.
        hashes_match(bytes(32), hash_session_token(token))
        raise OperatorNotAuthenticated()
    row, operator, tenant_status = found
    genuine = hashes_match(row.secret_hash, hash_session_token(token))
    usable = (
        row.revoked_at is None
        and now_ns < row.expires_at
        and operator.status == "active"
        and tenant_status == TenantStatus.ACTIVE.value
    )
    if not genuine or not usable:
        raise OperatorNotAuthenticated()
    roles = roles_of(operator)
    return OperatorPrincipal(
        tenant_id=operator.tenant_id,
        operator_id=operator.id,
        session_id=row.id,
        roles=roles,
        permissions=permissions_of(roles),
        password_change_required=operator.password_change_required,
    )


async def log_out(session: AsyncSession, *, principal: OperatorPrincipal, now_ns: int) -> None:
    """End the session the caller used; its token stops working at once."""
    await OperatorSessionRepository(session).revoke(
        operator_id=principal.operator_id, now_ns=now_ns, session_ids=[principal.session_id]
    )


async def change_password(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    current_password: str,
    new_password: str,
    now_ns: int,
    passwords: Passwords = DEFAULT_PASSWORDS,
) -> Operator | None:
    """Replace the caller's password (proving the current one) and end its other sessions,
    in case someone else knew the old password. None when the current password is wrong or
    the operator is locked, with the failure counted toward the sign-in lock and recorded
    as `login.failed` (stage `password_change`), as a sign-in's: the caller commits, then
    answers :class:`InvalidPassword`. A stolen session must not guess the password at the
    session's own rate, beside the sign-in's lock."""
    operator = await get_operator(
        session, tenant_id=principal.tenant_id, operator_id=principal.operator_id
    )
    locked = _locked(operator, now_ns)
    if locked or not await passwords.verify(operator.password_hash, current_password):
        if not locked:
            await _count_failure(session, operator, now_ns)
        await _record(
            session,
            operator=operator,
            event_type=SecurityEventType.LOGIN_FAILED,
            actor=principal.actor,
            now_ns=now_ns,
            detail={"stage": "password_change", "locked": locked},
        )
        return None
    check_password_policy(new_password, email=operator.email)
    if new_password == current_password:
        raise InvalidPassword("The new password must differ from the current one.")
    operator.password_hash = await passwords.hash(new_password)
    operator.password_change_required = False
    operator.updated_at = now_ns
    await session.flush()
    revoked = await OperatorSessionRepository(session).revoke(
        operator_id=operator.id, now_ns=now_ns, except_id=principal.session_id
    )
    await _record(
        session,
        operator=operator,
        event_type=SecurityEventType.SESSIONS_REVOKED,
        actor=principal.actor,
        now_ns=now_ns,
        detail={"reason": "password_changed", "sessions": revoked},
    )
    return operator

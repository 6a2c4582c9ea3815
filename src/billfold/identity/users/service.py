"""End users' accounts and sign-in: sign-up by the tenant's backend, the password step, the
second step, and the tenant's view of its users.

Service functions take keyword arguments, flush and never commit. A refusal whose trace
must survive the rollback (a failed sign-in counts towards the lock) carries an aftermath
(see ``errors``); run these through ``work.run_recording_failures``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import outbox_events
from billfold.identity.passwords import passwords_for
from billfold.identity.security_events import ActorType, SecurityEventType
from billfold.identity.types import Mode, Principal
from billfold.identity.users.config import UsersConfig
from billfold.identity.users.errors import (
    Aftermath,
    IdentifierTaken,
    InvalidCredentials,
    InvalidIdentifier,
    MfaTokenInvalid,
    UserNotAuthenticated,
    UserNotFound,
    with_aftermath,
)
from billfold.identity.users.events import record_user_event
from billfold.identity.users.identifiers import (
    Identifier,
    IdentifierKind,
    normalize_email,
    normalize_handle,
    normalize_phone,
    parse_login_identifier,
)
from billfold.identity.users.lockout import (
    failure_aftermath,
    is_locked,
    reserve_attempt,
    unknown_user_aftermath,
)
from billfold.identity.users.mfa import (
    FactorCheck,
    PasskeyAnswer,
    SecondFactorAnswer,
    check_second_factor,
    close_challenge_aftermath,
    enrolled_methods,
    method_of,
    passkey_authentication_options,
)
from billfold.identity.users.models import EndUser, MfaTicket
from billfold.identity.users.passwords import check_password_policy
from billfold.identity.users.repository import (
    DeviceRepository,
    FactorRepository,
    UserRepository,
)
from billfold.identity.users.sessions import IssuedTokens, revoke_all_sessions, start_session
from billfold.identity.users.tokens import (
    TokenKind,
    hash_token,
    mint_token,
    token_hash_if_well_formed,
)
from billfold.identity.users.types import UserPrincipal
from billfold.keys.keyring import Keyring
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import (
    Page,
    clamp_page_size,
    decode_id_cursor,
    encode_cursor,
)

__all__ = [
    "MFA_TICKET_ATTEMPTS_MAX",
    "MFA_TICKET_LIFETIME_NS",
    "LoginResult",
    "MfaRequired",
    "complete_mfa",
    "create_user",
    "erase_user_identifiers",
    "get_user",
    "list_users",
    "login",
    "mfa_passkey_options",
    "reserve_mfa_attempt",
    "revoke_user_sessions",
    "signed_in_user",
]

MFA_TICKET_LIFETIME_NS = 5 * 60 * NANOSECONDS_PER_SECOND
"""Time to open the authenticator app after the password step."""
MFA_TICKET_ATTEMPTS_MAX = 5
"""Wrong second factors one ticket allows; each also counts towards the account lock."""


@dataclass(frozen=True, slots=True)
class MfaRequired:
    """The password step passed; the ``bfu_mfa_…`` token carries the user to the next."""

    mfa_token: str
    expires_at: int
    methods: list[str]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """At most one of the two is set; neither when the sign-in was ``refused`` (after its
    failure was recorded: commit, then answer :class:`InvalidCredentials`)."""

    tokens: IssuedTokens | None
    mfa: MfaRequired | None
    refused: bool = False


def _identifiers(*, email: str | None, phone: str | None, handle: str | None) -> list[Identifier]:
    found = []
    if email is not None:
        found.append(Identifier(IdentifierKind.EMAIL, normalize_email(email)))
    if phone is not None:
        found.append(Identifier(IdentifierKind.PHONE, normalize_phone(phone)))
    if handle is not None:
        found.append(Identifier(IdentifierKind.HANDLE, normalize_handle(handle)))
    if not found:
        raise InvalidIdentifier("A user needs an email, a phone number or a handle.")
    return found


async def create_user(
    session: AsyncSession,
    *,
    principal: Principal,
    email: str | None,
    phone: str | None,
    handle: str | None,
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> EndUser:
    """Sign a user up in the caller's tenant and mode."""
    identifiers = _identifiers(email=email, phone=phone, handle=handle)
    check_password_policy(password)
    users = UserRepository(session)
    for identifier in identifiers:
        found = await users.find_by_identifier(
            tenant_id=principal.tenant_id, mode=principal.mode, identifier=identifier
        )
        if found is not None:
            raise IdentifierTaken(
                f"Another user already has this {identifier.kind.value}.",
                field=identifier.kind.value,
            )
    values = {identifier.kind.value: identifier.value for identifier in identifiers}
    user = EndUser(
        id=new_id(),
        tenant_id=principal.tenant_id,
        mode=principal.mode.value,
        email=values.get("email"),
        phone=values.get("phone"),
        handle=values.get("handle"),
        password_hash=await passwords_for(config.password_parameters).hash(password),
        status="active",
        failed_login_count=0,
        locked_until=None,
        created_at=now_ns,
    )
    try:
        await users.add(user)
    except IntegrityError as error:  # a concurrent sign-up took the identifier first
        raise IdentifierTaken("Another user already has one of these identifiers.") from error
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.USER_SIGNED_UP,
        now_ns=now_ns,
        actor_type=ActorType.API_KEY,
        actor_id=format_id("key", principal.api_key_id),
        detail={"mode": principal.mode.value, "identifiers": ",".join(values)},
    )
    outbox_events.user_created(session, user=user, now_ns=now_ns)
    return user


async def get_user(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, for_update: bool = False
) -> EndUser:
    """One of the caller's users; another tenant's or mode's is as absent as a missing one.
    ``for_update``: its row locked until the transaction ends (a change racing an erasure,
    which changes the row, waits for it or sees it)."""
    user = await UserRepository(session).get_for_tenant(
        tenant_id=principal.tenant_id, mode=principal.mode, user_id=user_id, for_update=for_update
    )
    if user is None:
        raise UserNotFound()
    return user


async def list_users(
    session: AsyncSession,
    *,
    principal: Principal,
    identifier: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[EndUser]:
    """The caller's users, oldest first, one bounded page at a time; or the one user an
    identifier names (an empty page when none does)."""
    users = UserRepository(session)
    if identifier is not None:
        parsed = parse_login_identifier(identifier)
        if parsed is None:
            raise InvalidIdentifier("The identifier is no email, E.164 phone number or handle.")
        found = await users.find_by_identifier(
            tenant_id=principal.tenant_id, mode=principal.mode, identifier=parsed
        )
        return Page(items=[] if found is None else [found], next_cursor=None)
    page_size = clamp_page_size(limit)
    rows = await users.list_for_tenant(
        tenant_id=principal.tenant_id,
        mode=principal.mode,
        after_id=None if cursor is None else decode_id_cursor(cursor),
        limit=page_size + 1,  # one more than asked says whether a next page exists
    )
    items = rows[:page_size]
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


async def revoke_user_sessions(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, now_ns: int
) -> int:
    """The tenant ends every session of one of its users (a lost phone, a support call)."""
    user = await get_user(session, principal=principal, user_id=user_id)
    return await revoke_all_sessions(
        session,
        user=user,
        now_ns=now_ns,
        actor_type=ActorType.API_KEY,
        actor_id=format_id("key", principal.api_key_id),
    )


async def login(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    identifier: str,
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> LoginResult:
    """The password step. Every refusal is the same after the same Argon2 work, whether
    the user exists, is locked or typed a wrong password.

    The user's row is locked before the password is checked (``FOR UPDATE`` on
    PostgreSQL; on SQLite the unit of work holds the write lock) and a failure is counted
    in this same unit of work, so concurrent guesses at one account are checked one after
    the other, each against the failures committed before it: no more are ever checked
    than the lock allows. A refusal is therefore recorded here and returned
    (``LoginResult.refused``) rather than raised, so that it commits; the caller raises
    :class:`InvalidCredentials` afterwards. An unknown identifier and a wrong password
    write alike (one security event, one commit), so timing does not tell them apart.
    """
    parsed = parse_login_identifier(identifier)
    user = None
    if parsed is not None:
        user = await UserRepository(session).find_signable(
            tenant_id=tenant_id, mode=mode, identifier=parsed, for_update=True
        )
    passwords = passwords_for(config.password_parameters)
    matches = await passwords.verify(None if user is None else user.password_hash, password)
    if user is None:
        await unknown_user_aftermath(tenant_id=tenant_id, mode=mode, now_ns=now_ns)(session)
        return LoginResult(tokens=None, mfa=None, refused=True)
    if is_locked(user, now_ns=now_ns) or not matches:
        locked = is_locked(user, now_ns=now_ns)
        await failure_aftermath(
            user,
            now_ns=now_ns,
            reason="locked" if locked else "wrong_password",
            stage="password",
            while_locked=locked,
        )(session)
        return LoginResult(tokens=None, mfa=None, refused=True)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(password)
    methods = await enrolled_methods(session, user_id=user.id)
    if methods:
        # The failure count is reset only once the whole sign-in succeeds: otherwise whoever
        # knows the password could sign in again between second-factor guesses and never
        # reach the lock.
        mfa = await _mfa_ticket(session, user=user, methods=methods, now_ns=now_ns)
        return LoginResult(tokens=None, mfa=mfa)
    user.failed_login_count = 0
    tokens = await start_session(session, user=user, methods="password", now_ns=now_ns)
    return LoginResult(tokens=tokens, mfa=None)


async def _mfa_ticket(
    session: AsyncSession, *, user: EndUser, methods: list[str], now_ns: int
) -> MfaRequired:
    factors = FactorRepository(session)
    await factors.delete_dead_tickets(user_id=user.id, now_ns=now_ns)
    token = mint_token(TokenKind.MFA)
    ticket = MfaTicket(
        id=new_id(),
        user_id=user.id,
        token_hash=hash_token(token),
        created_at=now_ns,
        expires_at=now_ns + MFA_TICKET_LIFETIME_NS,
        failed_attempts=0,
        consumed_at=None,
    )
    await factors.add(ticket)
    return MfaRequired(mfa_token=token, expires_at=ticket.expires_at, methods=methods)


async def _ticket_and_user(
    session: AsyncSession, *, mfa_token: str, now_ns: int
) -> tuple[MfaTicket, EndUser]:
    token_hash = token_hash_if_well_formed(mfa_token, kind=TokenKind.MFA)
    ticket = None if token_hash is None else await FactorRepository(session).find_ticket(token_hash)
    if (
        ticket is None
        or ticket.expires_at <= now_ns
        or ticket.consumed_at is not None
        or ticket.failed_attempts >= MFA_TICKET_ATTEMPTS_MAX
    ):
        raise MfaTokenInvalid()
    users = UserRepository(session)
    user = await users.get(ticket.user_id)
    if user is None or not await users.is_signable(user.id):
        raise MfaTokenInvalid()
    return ticket, user


async def mfa_passkey_options(
    session: AsyncSession, *, mfa_token: str, config: UsersConfig, now_ns: int
) -> dict[str, object]:
    """Passkey options for the second step of a sign-in."""
    _ticket, user = await _ticket_and_user(session, mfa_token=mfa_token, now_ns=now_ns)
    return await passkey_authentication_options(
        session, user_id=user.id, config=config, now_ns=now_ns
    )


async def reserve_mfa_attempt(session: AsyncSession, *, mfa_token: str, now_ns: int) -> None:
    """Count the second step's attempt against the account lock before its answer is
    checked; commit this before :func:`complete_mfa` (``work.run_attempt``)."""
    _ticket, user = await _ticket_and_user(session, mfa_token=mfa_token, now_ns=now_ns)
    if not await reserve_attempt(session, user_id=user.id, now_ns=now_ns):
        aftermath = failure_aftermath(
            user, now_ns=now_ns, reason="locked", stage="mfa", while_locked=True
        )
        raise with_aftermath(InvalidCredentials(), aftermath)


async def complete_mfa(
    session: AsyncSession,
    *,
    mfa_token: str,
    answer: SecondFactorAnswer,
    config: UsersConfig,
    keyring: Keyring,
    now_ns: int,
) -> IssuedTokens:
    """The second step: a TOTP code, a recovery code or a passkey assertion. The attempt
    was counted by :func:`reserve_mfa_attempt`, committed before this runs; a success
    resets the count."""
    ticket, user = await _ticket_and_user(session, mfa_token=mfa_token, now_ns=now_ns)
    method = method_of(answer)
    # A passkey answer uses its challenge up whatever the outcome; the refusal's aftermath
    # closes it, since this unit of work, which spent it, rolls back.
    closing = (
        close_challenge_aftermath(user_id=user.id, purpose="authentication", now_ns=now_ns)
        if isinstance(answer, PasskeyAnswer)
        else None
    )
    if is_locked(user, now_ns=now_ns):
        aftermath = failure_aftermath(
            user, now_ns=now_ns, reason="locked", stage="mfa", while_locked=True, also=closing
        )
        raise with_aftermath(InvalidCredentials(), aftermath)
    checked = await check_second_factor(
        session, user=user, answer=answer, config=config, keyring=keyring, now_ns=now_ns
    )
    if checked is not FactorCheck.PROVED:
        aftermath = failure_aftermath(
            user,
            now_ns=now_ns,
            reason=f"wrong_{method}" if checked is FactorCheck.WRONG else checked.value,
            stage="mfa",
            reserved=True,
            also=_ticket_failure(ticket.id, closing),
        )
        raise with_aftermath(InvalidCredentials(), aftermath)
    if not await FactorRepository(session).consume_ticket(ticket_id=ticket.id, now_ns=now_ns):
        raise MfaTokenInvalid()  # a concurrent request completed this sign-in already
    user.failed_login_count = 0
    return await start_session(session, user=user, methods=f"password+{method}", now_ns=now_ns)


def _ticket_failure(ticket_id: uuid.UUID, also: Aftermath | None) -> Aftermath:
    async def count(session: AsyncSession) -> None:
        await FactorRepository(session).count_ticket_failure(ticket_id)
        if also is not None:
            await also(session)

    return count


async def signed_in_user(session: AsyncSession, *, principal: UserPrincipal) -> EndUser:
    """The user an access token proved (which authentication found usable)."""
    user = await UserRepository(session).get(principal.user_id)
    if user is None:
        raise UserNotAuthenticated()
    return user


ERASED_HANDLE_PREFIX = "erased"
ERASED_NAME = "erased"
"""What an erased user's devices and passkeys are called from then on."""
ERASED_PASSWORD_HASH = "!erased"  # noqa: S105 (a marker that matches no password)
"""No Argon2 PHC string, so it matches no password (``passwords.verify``)."""


async def erase_user_identifiers(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, now_ns: int
) -> EndUser:
    """For erasure (``billfold.privacy``): the user's email and phone are removed, the
    handle becomes a pseudonym, the names they gave their devices and passkeys (free text
    such as "Jane's iPhone") are replaced, the user is disabled and every session ends.
    The rows stay: other records (the ledger's, consent history, security events naming a
    device or passkey by id) keep referring to their ids.

    What only served signing in goes too: the password hash (a copy of the database would
    otherwise let anyone try guesses at a password people reuse elsewhere) and the TOTP
    seed, which the tenant's ``totp`` key, not the user's destroyed data key, still opens.
    """
    user = await get_user(session, principal=principal, user_id=user_id)
    user.email = None
    user.phone = None
    user.handle = ERASED_HANDLE_PREFIX + user.id.hex[-24:]
    user.password_hash = ERASED_PASSWORD_HASH
    user.status = "disabled"
    await session.flush()
    await DeviceRepository(session).rename_all(user_id=user.id, name=ERASED_NAME)
    factors = FactorRepository(session)
    await factors.rename_passkeys(user_id=user.id, name=ERASED_NAME)
    await factors.delete_totp(user.id)
    outbox_events.user_updated(
        session, user=user, changed=["email", "phone", "handle", "status"], now_ns=now_ns
    )
    await revoke_all_sessions(
        session,
        user=user,
        now_ns=now_ns,
        actor_type=ActorType.API_KEY,
        actor_id=format_id("key", principal.api_key_id),
    )
    return user

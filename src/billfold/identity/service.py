"""Identity's decisions: tenants, API keys and verifying a presented key.

Functions take the session and keyword arguments, flush through the repositories and never
commit: the caller's unit of work does. Everything a tenant's caller can reach is scoped by
the caller's :class:`Principal` (tenant and mode), so a route cannot forget the filter.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import outbox_events
from billfold.identity.credentials import (
    ParsedApiKey,
    hash_api_key,
    hashes_match,
    mint_api_key,
    parse_api_key,
)
from billfold.identity.errors import (
    ApiKeyLimitReached,
    ApiKeyNotFound,
    InvalidExpiry,
    InvalidName,
    LiveOnlyScope,
    ModeMismatch,
    NotAuthenticated,
    TenantNotFound,
    TenantSuspended,
)
from billfold.identity.models import (
    API_KEY_NAME_LENGTH_MAX,
    SECRET_HASH_BYTES,
    TENANT_NAME_LENGTH_MAX,
    ApiKey,
    Tenant,
)
from billfold.identity.repository import ApiKeyRepository, TenantRepository
from billfold.identity.security_events import (
    ActorType,
    SecurityEventType,
    record_security_event,
)
from billfold.identity.types import LIVE_ONLY_SCOPES, Mode, Principal, Scope, TenantStatus
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import ValidationFailed, invariant
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import (
    Page,
    clamp_page_size,
    decode_id_cursor,
    encode_cursor,
)

__all__ = [
    "API_KEYS_PER_TENANT_MAX",
    "API_KEY_LIFETIME_MAX_NS",
    "LAST_USED_RESOLUTION_NS",
    "BootstrappedTenant",
    "CreatedApiKey",
    "VerifiedApiKey",
    "bootstrap_tenant",
    "create_api_key",
    "create_tenant",
    "get_api_key",
    "grant_api_key",
    "list_api_keys",
    "record_api_key_use",
    "revoke_api_key",
    "revoke_api_key_any_tenant",
    "scopes_of",
    "verify_api_key",
]

API_KEYS_PER_TENANT_MAX = 1000
"""Unrevoked keys a tenant may hold at once: a limit on everything."""
API_KEY_LIFETIME_MAX_NS = 10 * 366 * 86_400 * NANOSECONDS_PER_SECOND
"""The furthest expiry a key may be given (a key may also never expire)."""
LAST_USED_RESOLUTION_NS = 60 * NANOSECONDS_PER_SECOND
"""last_used_at is written at most this often per key, not on every request."""

# Compared against when the key id is unknown, so that path does the same hashing work.
_NO_HASH = bytes(SECRET_HASH_BYTES)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key's row and the key itself, which exists only here and is never stored."""

    api_key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class BootstrappedTenant:
    """A new tenant and its first administrator key for each mode."""

    tenant: Tenant
    test_key: CreatedApiKey
    live_key: CreatedApiKey


@dataclass(frozen=True, slots=True)
class VerifiedApiKey:
    """A genuine, usable key: who it proves, and whether its last-used time is stale."""

    principal: Principal
    last_use_due: bool


def scopes_of(api_key: ApiKey) -> frozenset[Scope]:
    """The key's scopes; a name this version does not know grants nothing."""
    known = {scope.value for scope in Scope}
    return frozenset(Scope(name) for name in api_key.scopes.split() if name in known)


def _clean_name(name: str, *, length_max: int) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= length_max or not cleaned.isprintable():
        raise InvalidName(f"A name has 1 to {length_max} printable characters.")
    return cleaned


async def create_tenant(session: AsyncSession, *, name: str, now_ns: int) -> Tenant:
    tenant = Tenant(
        id=new_id(),
        name=_clean_name(name, length_max=TENANT_NAME_LENGTH_MAX),
        status=TenantStatus.ACTIVE.value,
        created_at=now_ns,
    )
    await TenantRepository(session).add(tenant)
    await record_security_event(
        session,
        tenant_id=tenant.id,
        event_type=SecurityEventType.TENANT_CREATED,
        actor_type=ActorType.SYSTEM,
        actor_id=None,
        occurred_at=now_ns,
        subject_id=format_id("ten", tenant.id),
    )
    return tenant


async def bootstrap_tenant(session: AsyncSession, *, name: str, now_ns: int) -> BootstrappedTenant:
    """A tenant with a ``tenant:admin`` key per mode, from which it makes every other key."""
    tenant = await create_tenant(session, name=name, now_ns=now_ns)
    keys = [
        await create_api_key(
            session,
            tenant_id=tenant.id,
            name=f"First {mode.value} administrator key",
            mode=mode,
            scopes=[Scope.TENANT_ADMIN],
            expires_at_ns=None,
            now_ns=now_ns,
        )
        for mode in (Mode.TEST, Mode.LIVE)
    ]
    return BootstrappedTenant(tenant=tenant, test_key=keys[0], live_key=keys[1])


async def create_api_key(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    mode: Mode,
    scopes: Iterable[Scope],
    expires_at_ns: int | None,
    now_ns: int,
    actor_type: ActorType = ActorType.SYSTEM,
    actor_id: str | None = None,
) -> CreatedApiKey:
    """A new key for an active tenant; the returned secret is the only copy there will be.
    A test key is refused the scopes only live keys carry (`LiveOnlyScope`)."""
    wanted = {Scope(scope) for scope in scopes}
    granted = " ".join(sorted(scope.value for scope in wanted))
    if not granted:
        raise ValidationFailed("An API key needs at least one scope.")
    _check_scopes_for_mode(wanted, mode=mode)
    _check_expiry(expires_at_ns, now_ns=now_ns)
    cleaned_name = _clean_name(name, length_max=API_KEY_NAME_LENGTH_MAX)
    await _require_active_tenant(session, tenant_id)
    api_keys = ApiKeyRepository(session)
    if await api_keys.count_unrevoked(tenant_id) >= API_KEYS_PER_TENANT_MAX:
        raise ApiKeyLimitReached(
            f"A tenant holds at most {API_KEYS_PER_TENANT_MAX} unrevoked API keys; revoke one.",
            limit=API_KEYS_PER_TENANT_MAX,
        )
    api_key_id = new_id()
    secret = mint_api_key(mode=mode, api_key_id=api_key_id)
    api_key = ApiKey(
        id=api_key_id,
        tenant_id=tenant_id,
        name=cleaned_name,
        mode=mode.value,
        scopes=granted,
        secret_hash=hash_api_key(secret),
        created_at=now_ns,
        expires_at=expires_at_ns,
        revoked_at=None,
        last_used_at=None,
    )
    await api_keys.add(api_key)
    # Paired with verify_api_key: a key that could not be parsed back would lock its owner out.
    invariant(
        parse_api_key(secret) == ParsedApiKey(mode=mode, api_key_id=api_key_id),
        "a minted API key must parse back to its mode and id",
    )
    await record_security_event(
        session,
        tenant_id=tenant_id,
        event_type=SecurityEventType.API_KEY_CREATED,
        actor_type=actor_type,
        actor_id=actor_id,
        occurred_at=now_ns,
        subject_id=format_id("key", api_key_id),
        detail={"mode": mode.value, "scopes": granted},
    )
    outbox_events.api_key_created(
        session,
        tenant_id=tenant_id,
        mode=mode.value,
        api_key_id=api_key_id,
        name=cleaned_name,
        scopes=granted.split(" "),
        expires_at=expires_at_ns,
        now_ns=now_ns,
    )
    return CreatedApiKey(api_key=api_key, secret=secret)


def _check_scopes_for_mode(scopes: set[Scope], *, mode: Mode) -> None:
    live_only = sorted(scope.value for scope in scopes & LIVE_ONLY_SCOPES)
    if mode == Mode.TEST and live_only:
        raise LiveOnlyScope(
            f"Only live keys may carry {', '.join(live_only)}: the routes that need it refuse"
            " test keys. Make a live key for it.",
            scopes=live_only,
            mode=mode.value,
        )


def _check_expiry(expires_at_ns: int | None, *, now_ns: int) -> None:
    if expires_at_ns is None:
        return
    if not now_ns < expires_at_ns <= now_ns + API_KEY_LIFETIME_MAX_NS:
        raise InvalidExpiry(
            "expires_at must be in the future and at most 10 years away; omit it for never.",
            lifetime_max_s=API_KEY_LIFETIME_MAX_NS // NANOSECONDS_PER_SECOND,
        )


async def _require_active_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Locked: the caller counts the tenant's keys next (see `get_for_update`)."""
    tenant = await TenantRepository(session).get_for_update(tenant_id)
    if tenant is None:
        raise TenantNotFound()
    if tenant.status != TenantStatus.ACTIVE.value:
        raise TenantSuspended("A suspended tenant gets no new API keys.")


async def grant_api_key(
    session: AsyncSession,
    *,
    principal: Principal,
    name: str,
    mode: Mode | None,
    scopes: Iterable[Scope],
    expires_at_ns: int | None,
    now_ns: int,
) -> CreatedApiKey:
    """A key made by an API caller, for its own tenant and in its own mode only.

    A test key minting a live key would let the less guarded sandbox credential reach real
    money; live keys come from a live key or from the operator's command line.
    """
    if mode is not None and mode != principal.mode:
        raise ModeMismatch(
            f"A {principal.mode.value} key makes only {principal.mode.value} keys.",
            mode=principal.mode.value,
        )
    return await create_api_key(
        session,
        tenant_id=principal.tenant_id,
        name=name,
        mode=principal.mode,
        scopes=scopes,
        expires_at_ns=expires_at_ns,
        now_ns=now_ns,
        actor_type=ActorType.API_KEY,
        actor_id=format_id("key", principal.api_key_id),
    )


async def get_api_key(
    session: AsyncSession, *, principal: Principal, api_key_id: uuid.UUID
) -> ApiKey:
    """One of the caller's keys; another tenant's or mode's is as absent as a missing one."""
    api_key = await ApiKeyRepository(session).get_for_tenant(
        tenant_id=principal.tenant_id, mode=principal.mode, api_key_id=api_key_id
    )
    if api_key is None:
        raise ApiKeyNotFound()
    return api_key


async def list_api_keys(
    session: AsyncSession, *, principal: Principal, cursor: str | None, limit: int | None
) -> Page[ApiKey]:
    """The caller's keys for its mode, oldest first, one bounded page at a time."""
    page_size = clamp_page_size(limit)
    rows = await ApiKeyRepository(session).list_for_tenant(
        tenant_id=principal.tenant_id,
        mode=principal.mode,
        after_id=None if cursor is None else decode_id_cursor(cursor),
        limit=page_size + 1,  # one more than asked says whether a next page exists
    )
    items = rows[:page_size]
    has_more = len(rows) > page_size
    next_cursor = encode_cursor([items[-1].id.hex]) if has_more else None
    return Page(items=items, next_cursor=next_cursor)


async def revoke_api_key(
    session: AsyncSession, *, principal: Principal, api_key_id: uuid.UUID, now_ns: int
) -> ApiKey:
    """Revoke one of the caller's keys; revoking a revoked key changes nothing."""
    api_key = await get_api_key(session, principal=principal, api_key_id=api_key_id)
    actor_id = format_id("key", principal.api_key_id)
    return await _revoke(
        session, api_key=api_key, now_ns=now_ns, actor_type=ActorType.API_KEY, actor_id=actor_id
    )


async def revoke_api_key_any_tenant(
    session: AsyncSession, *, api_key_id: uuid.UUID, now_ns: int
) -> ApiKey:
    """The operator's revocation from the command line, which is not scoped to a tenant."""
    api_key = await ApiKeyRepository(session).get_any_tenant(api_key_id)
    if api_key is None:
        raise ApiKeyNotFound()
    return await _revoke(
        session, api_key=api_key, now_ns=now_ns, actor_type=ActorType.SYSTEM, actor_id=None
    )


async def _revoke(
    session: AsyncSession,
    *,
    api_key: ApiKey,
    now_ns: int,
    actor_type: ActorType,
    actor_id: str | None,
) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = now_ns
        await session.flush()
        await record_security_event(
            session,
            tenant_id=api_key.tenant_id,
            event_type=SecurityEventType.API_KEY_REVOKED,
            actor_type=actor_type,
            actor_id=actor_id,
            occurred_at=now_ns,
            subject_id=format_id("key", api_key.id),
        )
        outbox_events.api_key_revoked(
            session,
            tenant_id=api_key.tenant_id,
            mode=api_key.mode,
            api_key_id=api_key.id,
            now_ns=now_ns,
        )
    return api_key


async def verify_api_key(session: AsyncSession, *, presented: str, now_ns: int) -> VerifiedApiKey:
    """The principal a presented key proves, or :class:`NotAuthenticated` for any failure."""
    parsed = parse_api_key(presented)
    if parsed is None:
        raise NotAuthenticated()
    api_key = await ApiKeyRepository(session).get_with_tenant(parsed.api_key_id)
    genuine = hashes_match(
        _NO_HASH if api_key is None else api_key.secret_hash, hash_api_key(presented)
    )
    if api_key is None or not genuine or not _usable(api_key, mode=parsed.mode, now_ns=now_ns):
        raise NotAuthenticated()
    principal = Principal(
        tenant_id=api_key.tenant_id,
        api_key_id=api_key.id,
        mode=Mode(api_key.mode),
        scopes=scopes_of(api_key),
    )
    last_used_at = api_key.last_used_at
    last_use_due = last_used_at is None or last_used_at <= now_ns - LAST_USED_RESOLUTION_NS
    return VerifiedApiKey(principal=principal, last_use_due=last_use_due)


def _usable(api_key: ApiKey, *, mode: Mode, now_ns: int) -> bool:
    return (
        api_key.mode == mode.value
        and api_key.revoked_at is None
        and (api_key.expires_at is None or now_ns < api_key.expires_at)
        and api_key.tenant.status == TenantStatus.ACTIVE.value
    )


async def record_api_key_use(session: AsyncSession, *, api_key_id: uuid.UUID, now_ns: int) -> None:
    """Note that the key was used now, unless that was already noted within the minute."""
    await ApiKeyRepository(session).record_use(
        api_key_id=api_key_id,
        now_ns=now_ns,
        stale_before_ns=now_ns - LAST_USED_RESOLUTION_NS + 1,
    )

"""Decisions about webhook endpoints, events and replays. Never commits: the caller's
unit of work does. Every function is scoped to one (tenant, mode)."""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.errors import (
    EventNotFound,
    EventNotSubscribed,
    InvalidEventFilter,
    TooManyWebhookEndpoints,
    WebhookEndpointDisabled,
    WebhookEndpointNotFound,
)
from billfold.events.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from billfold.events.secrets import open_secret, seal_secret
from billfold.events.ssrf import resolve_target
from billfold.events.types import (
    ENDPOINT_ID_PREFIX,
    EVENT_TYPE_PATTERN,
    EVENT_TYPES,
    TYPE_LENGTH_MAX,
    Event,
)
from billfold.events.webhooks import BATCH_SIZE_MAX, delivery_row, endpoint_wants, new_secret
from billfold.keys.keyring import Keyring
from billfold.kit.auth import Mode
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.ids import format_id, new_id

__all__ = [
    "EVENT_TYPES_FILTER_MAX",
    "EndpointChange",
    "create_endpoint",
    "delete_endpoint",
    "endpoint_secret",
    "get_endpoint",
    "get_event",
    "replay_event",
    "rotate_secret",
    "update_endpoint",
]

EVENT_TYPES_FILTER_MAX = 64
DESCRIPTION_LENGTH_MAX = 256
_TYPE = re.compile(EVENT_TYPE_PATTERN)
_TYPE_FAMILY = re.compile(r"^com\.billfold\.[a-z_]+(\.[a-z_]+)*\.v[0-9]+$")


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose endpoints and events: a tenant in one mode."""

    tenant_id: uuid.UUID
    mode: Mode


@dataclass(frozen=True, slots=True)
class EndpointChange:
    url: str | None = None
    description: str | None = None
    event_types: Sequence[str] | None = None
    enabled: bool | None = None
    batch_size_max: int | None = None


def checked_event_types(event_types: Sequence[str]) -> list[str]:
    """The filter, deduplicated and sorted: each entry one of `EVENT_TYPES` (a filter
    matches a type exactly). A well-formed type Billfold never emits (a misspelling,
    `com.billfold.trnasfer.posted.v1`) is refused too: the endpoint would wait for ever."""
    if len(event_types) > EVENT_TYPES_FILTER_MAX:
        raise InvalidEventFilter(f"at most {EVENT_TYPES_FILTER_MAX} event types")
    for event_type in event_types:
        if len(event_type) > TYPE_LENGTH_MAX or not _TYPE.match(event_type):
            raise InvalidEventFilter(
                f"{event_type[:TYPE_LENGTH_MAX]!r} is not an event type"
                " (com.billfold.<object>.<what>.v<N>)"
            )
    unknown = sorted({event_type for event_type in event_types if event_type not in EVENT_TYPES})
    if unknown:
        raise InvalidEventFilter(
            "; ".join(_unknown_type(event_type) for event_type in unknown)
            + ". An endpoint filters on the types Billfold emits (see the README's event types).",
            unknown_event_types=unknown,
        )
    return sorted(set(event_types))


def _unknown_type(event_type: str) -> str:
    guesses = difflib.get_close_matches(event_type, EVENT_TYPES, n=1, cutoff=0.8)
    hint = f" (did you mean {guesses[0]!r}?)" if guesses else ""
    return f"{event_type!r} is not an event type Billfold emits{hint}"


def checked_batch_size(batch_size_max: int) -> int:
    if not 1 <= batch_size_max <= BATCH_SIZE_MAX:
        raise InvalidEventFilter(f"batch_size_max is between 1 and {BATCH_SIZE_MAX}")
    return batch_size_max


async def create_endpoint(
    session: AsyncSession,
    *,
    scope: Scope,
    url: str,
    description: str,
    event_types: Sequence[str],
    allow_private: bool,
    endpoints_max: int,
    now_ns: int,
    batch_size_max: int = 1,
    keyring: Keyring | None = None,
) -> WebhookEndpoint:
    """A new enabled endpoint with a fresh secret (the caller shows it once: see
    `endpoint_secret`), sealed with `keyring` when given."""
    types = checked_event_types(event_types)
    checked_batch_size(batch_size_max)
    await resolve_target(url, allow_private=allow_private)
    existing = await repository.endpoints_page(
        session, tenant_id=scope.tenant_id, mode=scope.mode.value, after=None, limit=endpoints_max
    )
    if len(existing) >= endpoints_max:
        raise TooManyWebhookEndpoints(f"a tenant has at most {endpoints_max} endpoints per mode")
    endpoint_id = new_id()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=scope.tenant_id,
        mode=scope.mode.value,
        url=url,
        description=description,
        event_types=types,
        status="enabled",
        disabled_reason=None,
        batch_size_max=batch_size_max,
        secret=await seal_secret(
            session,
            keyring,
            tenant_id=scope.tenant_id,
            endpoint_id=endpoint_id,
            column="secret",
            secret=new_secret(),
            now_ns=now_ns,
        ),
        previous_secret=None,
        previous_secret_expires_at=None,
        created_at=now_ns,
        updated_at=now_ns,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def get_endpoint(
    session: AsyncSession, *, scope: Scope, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    found = await repository.endpoint(
        session, tenant_id=scope.tenant_id, mode=scope.mode.value, endpoint_id=endpoint_id
    )
    if found is None:
        raise WebhookEndpointNotFound("no such webhook endpoint")
    return found


async def update_endpoint(
    session: AsyncSession,
    *,
    scope: Scope,
    endpoint_id: uuid.UUID,
    change: EndpointChange,
    allow_private: bool,
    now_ns: int,
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, scope=scope, endpoint_id=endpoint_id)
    if change.url is not None:
        await resolve_target(change.url, allow_private=allow_private)
        endpoint.url = change.url
    if change.description is not None:
        endpoint.description = change.description
    if change.event_types is not None:
        endpoint.event_types = checked_event_types(change.event_types)
    if change.batch_size_max is not None:
        endpoint.batch_size_max = checked_batch_size(change.batch_size_max)
    if change.enabled is not None:
        _set_enabled(endpoint, enabled=change.enabled)
    endpoint.updated_at = now_ns
    await session.flush()
    return endpoint


def _set_enabled(endpoint: WebhookEndpoint, *, enabled: bool) -> None:
    """Enable or disable `endpoint`; the status it already has changes nothing. A client
    that PATCHes an endpoint's whole state (`"status": "enabled"` beside each change) would
    otherwise restart the failing count that disables a dead receiver, and a `disabled`
    would replace the reason the worker disabled it for (`the receiver answered 410 Gone`)."""
    if (endpoint.status == "enabled") == enabled:
        return
    endpoint.status = "enabled" if enabled else "disabled"
    endpoint.disabled_reason = None if enabled else "disabled by the tenant"
    if enabled:  # the failing its receiver had is counted again from here
        endpoint.failing_since = None


async def endpoint_secret(
    session: AsyncSession, endpoint: WebhookEndpoint, *, keyring: Keyring | None
) -> str:
    """The endpoint's current secret in clear (`whsec_…`), to show its owner once."""
    return await open_secret(
        session,
        keyring,
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        column="secret",
        stored=endpoint.secret,
    )


async def rotate_secret(
    session: AsyncSession,
    *,
    scope: Scope,
    endpoint_id: uuid.UUID,
    overlap_s: int,
    now_ns: int,
    keyring: Keyring | None = None,
) -> WebhookEndpoint:
    """A new secret; the current one keeps signing beside it for `overlap_s`. Both are
    sealed with `keyring` when given (each bound to its own column)."""
    endpoint = await get_endpoint(session, scope=scope, endpoint_id=endpoint_id)
    current = await endpoint_secret(session, endpoint, keyring=keyring)
    endpoint.previous_secret = await seal_secret(
        session,
        keyring,
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        column="previous_secret",
        secret=current,
        now_ns=now_ns,
    )
    endpoint.previous_secret_expires_at = now_ns + overlap_s * NANOSECONDS_PER_SECOND
    endpoint.secret = await seal_secret(
        session,
        keyring,
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        column="secret",
        secret=new_secret(),
        now_ns=now_ns,
    )
    endpoint.updated_at = now_ns
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, *, scope: Scope, endpoint_id: uuid.UUID) -> None:
    endpoint = await get_endpoint(session, scope=scope, endpoint_id=endpoint_id)
    await repository.delete_endpoint(session, endpoint)


async def get_event(session: AsyncSession, *, scope: Scope, event_id: uuid.UUID) -> Event:
    found = await repository.event_by_id(
        session, tenant_id=scope.tenant_id, mode=scope.mode.value, event_id=event_id
    )
    if found is None:
        raise EventNotFound("no such event (or not yet dispatched)")
    return found


async def replay_event(
    session: AsyncSession,
    *,
    scope: Scope,
    event_id: uuid.UUID,
    endpoint_id: uuid.UUID | None,
    now_ns: int,
) -> list[uuid.UUID]:
    """Deliver an event again: to one endpoint, or to every enabled endpoint that wants it.
    The delivery keeps the event's id as `webhook-id`; the receiver's dedupe sees it again.
    A disabled endpoint named here is refused (`WebhookEndpointDisabled`), nothing written:
    the worker never sends to one, so its delivery would only wait. So is one whose
    `event_types` leave the event's type out (`EventNotSubscribed`): a replay delivers what
    the endpoint would have received, never what it filtered out."""
    event = await get_event(session, scope=scope, event_id=event_id)
    if endpoint_id is not None:
        endpoint = await get_endpoint(session, scope=scope, endpoint_id=endpoint_id)
        if endpoint.status != "enabled":
            raise WebhookEndpointDisabled(
                "the webhook endpoint is disabled; enable it, then replay",
                endpoint_id=format_id(ENDPOINT_ID_PREFIX, endpoint.id),
            )
        if not endpoint_wants(endpoint, event):
            raise EventNotSubscribed(
                f"the webhook endpoint is not subscribed to {event.type!r}; add the type to"
                " its event_types, then replay",
                endpoint_id=format_id(ENDPOINT_ID_PREFIX, endpoint.id),
                event_type=event.type,
            )
        targets = [endpoint]
    else:
        candidates = await repository.endpoints_of_tenants(session, [scope.tenant_id])
        targets = [e for e in candidates if endpoint_wants(e, event)]
    rows = [
        delivery_row(event, endpoint.id, endpoint.tenant_id, now_ns=now_ns, replay=True)
        for endpoint in targets
    ]
    await repository.insert_deliveries(session, rows)
    return [row["id"] for row in rows]  # type: ignore[misc]


async def deliveries(
    session: AsyncSession,
    *,
    scope: Scope,
    endpoint_id: uuid.UUID,
    before: uuid.UUID | None,
    limit: int,
) -> tuple[list[WebhookDelivery], dict[uuid.UUID, list[WebhookAttempt]]]:
    """The endpoint's deliveries, newest first, with their attempts."""
    await get_endpoint(session, scope=scope, endpoint_id=endpoint_id)
    rows = await repository.deliveries_page(
        session, endpoint_id=endpoint_id, before=before, limit=limit
    )
    return rows, await repository.attempts_of(session, [row.id for row in rows])

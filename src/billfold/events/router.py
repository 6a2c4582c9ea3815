"""Events over HTTP: webhook endpoints and their delivery log, the event list, replays, and
live Server-Sent Event streams. Scoped to the caller's tenant and mode; another tenant's id
is a 404, like one that does not exist. Reads need `events:read`, changes
`webhooks:write`."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from billfold.events import repository, service
from billfold.events.schemas import (
    ENDPOINT_ID_PREFIX,
    DeliveryPage,
    DeliveryResponse,
    EndpointCreateRequest,
    EndpointPage,
    EndpointResponse,
    EndpointUpdateRequest,
    EventPage,
    EventResponse,
    ReplayRequest,
    ReplayResponse,
)
from billfold.events.secrets import keystore_configured
from billfold.events.types import (
    EVENT_ID_PREFIX,
    EVENT_TYPE_PATTERN,
    TYPE_LENGTH_MAX,
    cloudevent_json,
)
from billfold.identity.auth import get_unit_of_work
from billfold.keys.keyring import Keyring
from billfold.kit.auth import Principal, require_scopes, still_admitted
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import ValidationFailed
from billfold.kit.http.caching import no_store
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import format_id, parse_id
from billfold.kit.pagination import (
    CURSOR_LENGTH_MAX,
    PAGE_SIZE_MAX,
    InvalidCursor,
    clamp_page_size,
    decode_cursor,
    decode_id_cursor,
    encode_cursor,
)
from billfold.kit.settings import Settings, get_settings

__all__ = ["EVENTS_READ", "WEBHOOKS_WRITE", "router"]

EVENTS_READ = "events:read"
WEBHOOKS_WRITE = "webhooks:write"
STREAM_BATCH_MAX = 100
HEARTBEAT_S = 15.0
CREDENTIAL_CHECK_S = 10.0
"""How often a live stream checks its API key again: it ends within this long of the key's
revocation or expiry (or its tenant's suspension), not at its `events_stream_duration_max_s`."""
_PUBLIC_ID = re.compile(r"^[a-z]{2,8}_[0-9a-f]{32}$")
_SEQ_MAX = 2**63 - 1
Aggregate = Annotated[str | None, Query(max_length=64, pattern=_PUBLIC_ID.pattern)]
"""A public id (`pay_…`, `txf_…`): the pattern puts in the document what `_aggregate` checks."""

router = APIRouter(prefix="/v1", tags=["events"], responses=problem_responses(401, 403, 429))
Reader = Annotated[Principal, Depends(require_scopes(EVENTS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(WEBHOOKS_WRITE))]
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Cursor = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]


def _settings(request: Request) -> Settings:
    """The application's settings (`create_app` keeps them on `app.state`)."""
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


Config = Annotated[Settings, Depends(_settings)]


def _secret_keys(request: Request, settings: Config) -> Keyring | None:
    """The keyring that seals endpoint secrets when a keystore is configured; else None
    (secrets are stored as they are)."""
    if not keystore_configured(settings):
        return None
    keyring: Keyring | None = getattr(request.app.state, "keyring", None)
    return keyring


SecretKeys = Annotated[Keyring | None, Depends(_secret_keys)]


def _scope(principal: Principal) -> service.Scope:
    return service.Scope(tenant_id=principal.tenant_id, mode=principal.mode)


def _endpoint_id(text: str) -> uuid.UUID:
    return parse_id(ENDPOINT_ID_PREFIX, text)


def _seq_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    values = decode_cursor(cursor)
    if len(values) != 1 or not isinstance(values[0], int) or not 0 <= values[0] <= _SEQ_MAX:
        raise InvalidCursor("not a cursor for this list")
    return values[0]


def _aggregate(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    if not _PUBLIC_ID.match(text):
        raise ValidationFailed("aggregate is a public id such as txf_… or pay_…")
    return uuid.UUID(hex=text.split("_", 1)[1])


@router.post(
    "/webhook-endpoints",
    dependencies=[Depends(no_store)],
    status_code=201,
    summary="Create a webhook endpoint; its signing secret is shown in this response only.",
    responses=problem_responses(422),
)
async def create_endpoint(
    body: EndpointCreateRequest,
    principal: Writer,
    unit_of_work: Work,
    settings: Config,
    keyring: SecretKeys,
) -> EndpointResponse:
    async with unit_of_work.begin() as session:
        endpoint = await service.create_endpoint(
            session,
            scope=_scope(principal),
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            allow_private=settings.webhooks_allow_private,
            endpoints_max=settings.webhooks_endpoints_max,
            batch_size_max=body.batch_size_max,
            now_ns=time.time_ns(),
            keyring=keyring,
        )
        secret = await service.endpoint_secret(session, endpoint, keyring=keyring)
        return EndpointResponse.of(endpoint, secret=secret)


@router.get("/webhook-endpoints", summary="List webhook endpoints.")
async def list_endpoints(
    principal: Reader, unit_of_work: Work, limit: Limit = None, cursor: Cursor = None
) -> EndpointPage:
    size = clamp_page_size(limit)
    after = None if cursor is None else decode_id_cursor(cursor)
    async with unit_of_work.read() as session:
        rows = await repository.endpoints_page(
            session,
            tenant_id=principal.tenant_id,
            mode=principal.mode.value,
            after=after,
            limit=size,
        )
    next_cursor = encode_cursor([rows[-1].id.hex]) if len(rows) == size else None
    return EndpointPage(items=[EndpointResponse.of(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    summary="One webhook endpoint (without its secret).",
    responses=problem_responses(404),
)
async def get_endpoint(endpoint_id: str, principal: Reader, unit_of_work: Work) -> EndpointResponse:
    async with unit_of_work.read() as session:
        endpoint = await service.get_endpoint(
            session, scope=_scope(principal), endpoint_id=_endpoint_id(endpoint_id)
        )
        return EndpointResponse.of(endpoint)


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    summary="Change an endpoint's URL, description, event types, or enable or disable it.",
    responses=problem_responses(404, 422),
)
async def update_endpoint(
    endpoint_id: str,
    body: EndpointUpdateRequest,
    principal: Writer,
    unit_of_work: Work,
    settings: Config,
) -> EndpointResponse:
    change = service.EndpointChange(
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=None if body.status is None else body.status == "enabled",
        batch_size_max=body.batch_size_max,
    )
    async with unit_of_work.begin() as session:
        endpoint = await service.update_endpoint(
            session,
            scope=_scope(principal),
            endpoint_id=_endpoint_id(endpoint_id),
            change=change,
            allow_private=settings.webhooks_allow_private,
            now_ns=time.time_ns(),
        )
        return EndpointResponse.of(endpoint)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    dependencies=[Depends(no_store)],
    summary="Replace the signing secret; the old one keeps signing during the overlap.",
    responses=problem_responses(404),
)
async def rotate_secret(
    endpoint_id: str, principal: Writer, unit_of_work: Work, settings: Config, keyring: SecretKeys
) -> EndpointResponse:
    async with unit_of_work.begin() as session:
        endpoint = await service.rotate_secret(
            session,
            scope=_scope(principal),
            endpoint_id=_endpoint_id(endpoint_id),
            overlap_s=settings.webhooks_secret_overlap_s,
            now_ns=time.time_ns(),
            keyring=keyring,
        )
        secret = await service.endpoint_secret(session, endpoint, keyring=keyring)
        return EndpointResponse.of(endpoint, secret=secret)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    summary="Delete an endpoint and its delivery log.",
    responses=problem_responses(404),
)
async def delete_endpoint(endpoint_id: str, principal: Writer, unit_of_work: Work) -> Response:
    async with unit_of_work.begin() as session:
        await service.delete_endpoint(
            session, scope=_scope(principal), endpoint_id=_endpoint_id(endpoint_id)
        )
    return Response(status_code=204)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    summary=(
        "The endpoint's deliveries by id, descending: first deliveries in reverse log order,"
        " replays above them; each with its attempts."
    ),
    responses=problem_responses(404),
)
async def list_deliveries(
    endpoint_id: str,
    principal: Reader,
    unit_of_work: Work,
    limit: Limit = None,
    cursor: Cursor = None,
) -> DeliveryPage:
    size = clamp_page_size(limit)
    before = None if cursor is None else decode_id_cursor(cursor)
    async with unit_of_work.read() as session:
        rows, attempts = await service.deliveries(
            session,
            scope=_scope(principal),
            endpoint_id=_endpoint_id(endpoint_id),
            before=before,
            limit=size,
        )
    next_cursor = encode_cursor([rows[-1].id.hex]) if len(rows) == size else None
    return DeliveryPage(
        items=[DeliveryResponse.of(row, attempts.get(row.id, [])) for row in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/events",
    summary="The tenant's events, oldest first (CloudEvents JSON).",
    description="`type` filters on one event type Billfold emits (see the README's event"
    " types); a well-formed type it never emits is 422 `invalid_event_filter`, naming the"
    " closest known type, rather than an empty page that looks like no events yet.",
    responses=problem_responses(422),
)
async def list_events(
    principal: Reader,
    unit_of_work: Work,
    limit: Limit = None,
    cursor: Cursor = None,
    aggregate: Aggregate = None,
    type: Annotated[
        str | None, Query(max_length=TYPE_LENGTH_MAX, pattern=EVENT_TYPE_PATTERN)
    ] = None,
) -> EventPage:
    size = clamp_page_size(limit)
    types = [] if type is None else service.checked_event_types([type])
    async with unit_of_work.read() as session:
        events = await repository.tenant_events(
            session,
            tenant_id=principal.tenant_id,
            mode=principal.mode.value,
            after_seq=_seq_cursor(cursor),
            limit=size,
            aggregate_id=_aggregate(aggregate),
            types=types,
        )
    next_cursor = encode_cursor([events[-1].seq]) if len(events) == size else None
    return EventPage(items=[EventResponse.of(e) for e in events], next_cursor=next_cursor)


@router.get(
    "/events/stream",
    summary="Live events as Server-Sent Events: the tenant's feed, or one aggregate's"
    " (`aggregate=pay_…` for a checkout page waiting on a payment).",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    principal: Reader,
    unit_of_work: Work,
    settings: Config,
    aggregate: Aggregate = None,
    after: Annotated[int | None, Query(ge=0, le=_SEQ_MAX)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^[0-9]+$")] = None,
) -> StreamingResponse:
    aggregate_id = _aggregate(aggregate)
    start = after or 0
    if last_event_id is not None:
        if not last_event_id.isdigit() or int(last_event_id) > _SEQ_MAX:
            raise ValidationFailed("Last-Event-ID is the sequence number of an event")
        start = int(last_event_id)
    return StreamingResponse(
        _stream(
            request,
            unit_of_work,
            principal,
            settings,
            aggregate_id=aggregate_id,
            after_seq=start,
        ),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _stream(
    request: Request,
    unit_of_work: UnitOfWork,
    principal: Principal,
    settings: Settings,
    *,
    aggregate_id: uuid.UUID | None,
    after_seq: int,
) -> AsyncIterator[bytes]:
    """Polls the log; each event is `id: <seq>`, `event: <type>`, `data: <CloudEvent>`.
    Ends after `events_stream_duration_max_s`; the client reconnects with Last-Event-ID.
    Each poll reads (`read`): on SQLite a `begin` would queue every open stream for the one
    write lock, twice a second, behind every write. Ends, too, once its API key no longer
    admits it (checked every `CREDENTIAL_CHECK_S`): the client's reconnection is refused.
    A wait between polls ends at the next keep-alive, credential check or the end of the
    stream: a poll interval (up to 30 s) used to delay each past its documented time."""
    deadline = time.monotonic() + settings.events_stream_duration_max_s
    quiet_since = checked_at = time.monotonic()
    yield b"retry: 1000\n\n"
    while time.monotonic() < deadline:
        if time.monotonic() - checked_at >= CREDENTIAL_CHECK_S:
            if not await still_admitted(request, principal):
                return
            checked_at = time.monotonic()
        async with unit_of_work.read() as session:
            events = await repository.tenant_events(
                session,
                tenant_id=principal.tenant_id,
                mode=principal.mode.value,
                after_seq=after_seq,
                limit=STREAM_BATCH_MAX,
                aggregate_id=aggregate_id,
            )
        for event in events:
            after_seq = event.seq
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (
                event.seq,
                event.type.encode(),
                cloudevent_json(event),
            )
        if events:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= HEARTBEAT_S:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        now = time.monotonic()
        wake = now + settings.events_stream_poll_interval_s
        await asyncio.sleep(
            min(wake, quiet_since + HEARTBEAT_S, checked_at + CREDENTIAL_CHECK_S, deadline) - now
        )


@router.get("/events/{event_id}", summary="One event.", responses=problem_responses(404))
async def get_event(event_id: str, principal: Reader, unit_of_work: Work) -> EventResponse:
    async with unit_of_work.read() as session:
        event = await service.get_event(
            session, scope=_scope(principal), event_id=parse_id(EVENT_ID_PREFIX, event_id)
        )
    return EventResponse.of(event)


@router.post(
    "/events/{event_id}/replay",
    status_code=202,
    summary="Deliver an event again to its endpoints (or one), with the same webhook-id.",
    description=(
        "Without `endpoint_id`, to every enabled endpoint that wants the event. A disabled"
        " endpoint named in `endpoint_id` is refused with 409 `webhook_endpoint_disabled`"
        " and nothing is queued: enable it (PATCH its `status`), then replay. So is an endpoint"
        " whose `event_types` leave the event's type out (409 `event_not_subscribed`): a"
        " replay sends only what the endpoint subscribes to. Without `endpoint_id`, when no"
        " enabled endpoint wants the event, nothing is queued: 202 with no `delivery_ids`."
    ),
    responses=problem_responses(404, 409, 422),
)
async def replay_event(
    event_id: str, principal: Writer, unit_of_work: Work, body: ReplayRequest | None = None
) -> ReplayResponse:
    endpoint = None if body is None or body.endpoint_id is None else body.endpoint_id
    async with unit_of_work.begin() as session:
        ids = await service.replay_event(
            session,
            scope=_scope(principal),
            event_id=parse_id(EVENT_ID_PREFIX, event_id),
            endpoint_id=None if endpoint is None else _endpoint_id(endpoint),
            now_ns=time.time_ns(),
        )
    return ReplayResponse(delivery_ids=[format_id("whd", i) for i in ids])

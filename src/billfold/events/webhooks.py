"""Webhooks: Standard Webhooks signatures, the retry schedule, the fan-out channel that
turns events into deliveries, and the sender that makes the HTTP requests.

**Signatures** (https://www.standardwebhooks.com): each request carries `webhook-id` (the
event id, the same on every retry and replay: receivers deduplicate by it),
`webhook-timestamp` (Unix seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">` under the endpoint's `whsec_…` secret. After a rotation the old
secret keeps signing next to the new one (two space-separated signatures) for the overlap.

**Retries**: attempts are made at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h,
20 h and 24 h (each delay ±10% jitter): ten attempts over about three days, then the
delivery is dead-lettered. A `Retry-After` on a failed response postpones the next attempt
(never beyond a day). `410 Gone` disables the endpoint at once; so does failing every attempt
for `webhooks_disable_after_days`, and either emits `com.billfold.webhook_endpoint.disabled.v1`.
A 429, 502, 503 or 504 pauses the whole endpoint (`throttle_pause_s`). Every attempt is
logged with the status and the start of the response. Only 2xx is success; redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import os
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import httpcore
import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from billfold.events import repository
from billfold.events.models import WebhookDelivery, WebhookEndpoint
from billfold.events.outbox import emit
from billfold.events.secrets import is_sealed, open_secret
from billfold.events.ssrf import ResolvedTarget, UnsafeWebhookUrl, resolve_target
from billfold.events.types import (
    ENDPOINT_ID_PREFIX,
    EVENT_ID_PREFIX,
    Event,
    Reads,
    cloudevent_json,
)
from billfold.keys.errors import DecryptionFailed, KeyDestroyed, KeystoreUnavailable
from billfold.keys.keyring import Keyring
from billfold.kit.auth import Mode
from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id, new_id, ordered_derived_id

__all__ = [
    "BATCH_SIZE_MAX",
    "RETRY_DELAYS_S",
    "SECRET_PREFIX",
    "THROTTLE_STATUSES",
    "Outcome",
    "Subscription",
    "WebhookFanout",
    "WebhookSender",
    "batch_json",
    "batch_message_id",
    "first_delivery_id",
    "new_secret",
    "next_delay_s",
    "retry_after_s",
    "signature_headers",
    "throttle_pause_s",
]

log = structlog.get_logger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 24
RETRY_DELAYS_S: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 72000, 86400)
"""Delays before attempts 2..10; about three days in all."""
ATTEMPTS_MAX = len(RETRY_DELAYS_S) + 1
JITTER = 0.1
RETRY_AFTER_MAX_S = 86_400
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that pause the whole endpoint (Standard Webhooks: 429, 502 and 504 ask the sender
to throttle; 503 says the same with its `Retry-After`)."""
THROTTLE_FIRST_S = 5
"""The first pause without a `Retry-After`; it doubles with each such answer in a row."""
THROTTLE_MAX_S = 300
"""The longest pause without a `Retry-After`."""
THROTTLE_RETRY_AFTER_MAX_S = 3600
"""The longest pause a `Retry-After` asks for (the delivery's own retry may wait longer)."""
DELIVERY_NAMESPACE = uuid.UUID("a3c1e7d2-5b4f-4e60-8f2a-9d1c0b7e6a53")
_DELIVERY_NAMESPACE_BYTES = DELIVERY_NAMESPACE.bytes
ERROR_LENGTH_MAX = 256
OPENED_SECRETS_MAX = 10_000
"""Opened (decrypted) endpoint secrets a sender keeps in memory."""
RESOLVED_TTL_S = 30
"""How long a sender sends to an endpoint host's checked address before resolving and
checking it again. Every round used to resolve every endpoint it sent to: a DNS query, and
a hop through the event loop's resolver threads that took about 24 ms of each handover
under the events benchmark. What is reused was checked (SSRF), and the request goes to that
address, so a host whose DNS turned private meanwhile is still not reached; refusals and
failures are not kept, so a host that failed to resolve is tried again at the next attempt."""
RESOLVED_MAX = 10_000
"""Checked resolutions a sender keeps in memory."""
CONNECT_ADDRESSES_MAX = 8
"""Most of a host's checked addresses a connection tries, one after the other."""
BATCH_ID_PREFIX = "msg"
BATCH_SIZE_MAX = 500
"""Most events an endpoint may take in one request."""
USER_AGENT = "Billfold-Webhooks/1"
ENDPOINT_DISABLED = "com.billfold.webhook_endpoint.disabled.v1"
"""Emitted when the sender disables an endpoint: `reason` `gone` (it answered 410) or
`failing` (every attempt failed for `webhooks_disable_after_days`)."""


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def signature_headers(
    *, message_id: str, timestamp_s: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers, one `v1` signature per active secret."""
    moment = datetime.datetime.fromtimestamp(timestamp_s, tz=datetime.UTC)
    text = body.decode()
    signatures = [Webhook(secret).sign(message_id, moment, text) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signatures),
    }


def next_delay_s(attempts_made: int, rng: random.Random) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones (None: no more)."""
    if attempts_made < 1 or attempts_made >= ATTEMPTS_MAX:
        return None
    delay = RETRY_DELAYS_S[attempts_made - 1]
    return delay * rng.uniform(1 - JITTER, 1 + JITTER)


def retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """A `Retry-After` header (delta seconds or HTTP date), bounded to a day; None if absent
    or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit also accepts '²' and other digits
        return float(min(int(text[:12]), RETRY_AFTER_MAX_S))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # asctime dates carry no zone: HTTP dates are GMT (RFC 9110)
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, min(moment.timestamp() - now_s, RETRY_AFTER_MAX_S))


def throttle_pause_s(streak: int, retry_after: float | None) -> float:
    """How long an endpoint is sent nothing after its `streak`-th throttling answer in a row
    (1 for the first): 5 s doubling to at most 5 min, or the `Retry-After` when that is
    longer (up to an hour)."""
    backoff = min(THROTTLE_FIRST_S * 2 ** min(max(streak, 1) - 1, 16), THROTTLE_MAX_S)
    return float(min(max(backoff, retry_after or 0.0), THROTTLE_RETRY_AFTER_MAX_S))


def first_delivery_id(event_id: uuid.UUID, endpoint_id: uuid.UUID, event_seq: int) -> uuid.UUID:
    """The first delivery of an event to an endpoint has one possible id: fan-out twice
    would collide instead of sending twice.

    An RFC 9562 UUIDv8 that sorts by the event's position: its 48 leading bits are
    `event_seq` (mod 2^48), the 74 free bits below them come from `uuid5(DELIVERY_NAMESPACE,
    "<event hex>:<endpoint hex>")`. Deliveries are written in log order, so their primary
    key and the endpoint's (endpoint, id) index grow at their right edge, as the delivery
    log's index on `delivery_id` does: a random id (the uuid5 alone) put each insert, and
    each completion's new index entries, on a random page of three indexes (about 10 µs of
    the server's CPU per delivery, 3,600-row batches into 300,000 rows)."""
    return ordered_derived_id(
        event_seq, _DELIVERY_NAMESPACE_BYTES, f"{event_id.hex}:{endpoint_id.hex}"
    )


async def endpoint_secrets(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    now_ns: int,
    keyring: Keyring | None = None,
    opened: dict[tuple[uuid.UUID, str], str] | None = None,
) -> list[str]:
    """The secrets that sign now, in clear: the current one and, during the overlap, the
    previous. Sealed ones are opened with `keyring` (and kept in `opened`)."""
    columns = [("secret", endpoint.secret)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret is not None and expires is not None and expires > now_ns:
        columns.append(("previous_secret", endpoint.previous_secret))
    found = []
    for column, stored in columns:
        known = None if opened is None else opened.get((endpoint.id, stored))
        if known is None:
            known = await open_secret(
                session,
                keyring,
                tenant_id=endpoint.tenant_id,
                endpoint_id=endpoint.id,
                column=column,
                stored=stored,
            )
            if opened is not None and is_sealed(stored):
                if len(opened) >= OPENED_SECRETS_MAX:
                    opened.clear()
                opened[(endpoint.id, stored)] = known
        found.append(known)
    return found


@dataclass(frozen=True, slots=True)
class Subscription:
    """What fanning out to an enabled endpoint needs of it, read off its row once per round:
    reading the ORM row's attributes for every (event, endpoint) pair was about half of the
    fan-out's own time."""

    endpoint_id: uuid.UUID
    tenant_id: uuid.UUID
    mode: str
    event_types: frozenset[str]
    """Empty: every type."""
    throttled_until: int | None = None
    """Its deliveries are due no sooner (the receiver asked to be throttled)."""

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> Subscription:
        return cls(
            endpoint.id,
            endpoint.tenant_id,
            endpoint.mode,
            frozenset(endpoint.event_types),
            endpoint.throttled_until,
        )

    def paused(self, now_ns: int) -> bool:
        return self.throttled_until is not None and now_ns < self.throttled_until

    def wants(self, event: Event) -> bool:
        return (
            self.tenant_id == event.tenant_id
            and self.mode == event.mode
            and (not self.event_types or event.type in self.event_types)
        )


def endpoint_wants(endpoint: WebhookEndpoint, event: Event) -> bool:
    return Subscription.of(endpoint).wants(event)


@dataclass(slots=True)
class Leased:
    """A delivery the fan-out leased as it wrote it, with its event (payload as text), for
    its own worker's sender to send without claiming it (`WebhookSender.send_leased`)."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event: Event


class WebhookFanout:
    """The `webhooks` channel: one delivery row per (event, subscribed endpoint), written in
    the cursor's transaction, so each happens exactly once.

    With `lease_ns` set (a running worker on PostgreSQL), it also leases the deliveries
    that are first in line, as the sender's claim would, and keeps them with their events
    for its worker to hand to the sender once the transaction commits (`take_leased`):
    the claim, its lease and the second read of each event are skipped. First in line:
    the first of the batch for its (endpoint, aggregate), with no delivery of that pair
    still pending. The others are written unleased and wait for the claim, which sends
    them only after the earlier ones completed, so order per aggregate holds either way.
    A lease that is never sent (the worker died) runs out and the claim takes it over."""

    name = "webhooks"
    selects_tenants = True

    def __init__(self) -> None:
        self.written = 0
        """Unleased delivery rows written so far (the worker wakes its sender when this
        grows)."""
        self.lease_ns: int | None = None
        """How long the deliveries it hands over are leased; None: it hands none over."""
        self._leased: list[Leased] = []

    @property
    def reads(self) -> Reads:
        """A delivery row needs the event's tenant, type and position, not its payload (the
        sender reads it when it sends), unless the fan-out hands the event over itself."""
        return Reads.ROWS if self.lease_ns is None else Reads.RAW

    async def tenants(self, session: AsyncSession) -> set[uuid.UUID]:
        """Only tenants with an enabled endpoint: the others' events make no delivery, so
        they are not read (most tenants of a deployment may have none)."""
        return await repository.tenants_with_endpoints(session)

    async def deliver(self, events: Sequence[Event]) -> None:
        return None

    async def record(self, session: AsyncSession, events: Sequence[Event], now_ns: int) -> None:
        self._leased = []
        endpoints = await repository.endpoints_of_tenants(session, {e.tenant_id for e in events})
        if not endpoints:
            return
        owned: dict[tuple[uuid.UUID, str], list[Subscription]] = {}
        for endpoint in endpoints:
            subscription = Subscription.of(endpoint)
            owned.setdefault((subscription.tenant_id, subscription.mode), []).append(subscription)
        wanted = [
            (event, subscription)
            for event in events
            for subscription in owned.get((event.tenant_id, event.mode), ())
            if subscription.wants(event)
        ]
        rows = [
            delivery_row(
                event, subscription.endpoint_id, subscription.tenant_id, now_ns=now_ns, replay=False
            )
            for event, subscription in wanted
        ]
        for row, (_, target) in zip(rows, wanted, strict=True):
            if target.paused(now_ns):
                row["next_attempt_at"] = target.throttled_until  # due when the pause ends
        leased: list[Leased] = []
        # Only events read with their payloads are handed over: `reads` follows `lease_ns`
        # when the round reads, and a round that read without them writes unleased.
        if self.lease_ns is not None and rows and events[0].data_json is not None:
            waiting = await repository.pending_pairs(
                session, {(target.endpoint_id, event.aggregate_id) for event, target in wanted}
            )
            leased_until = now_ns + self.lease_ns
            for row, (event, target) in zip(rows, wanted, strict=True):
                pair = (target.endpoint_id, event.aggregate_id)
                if pair not in waiting:  # events come in log order: the first is first
                    waiting.add(pair)
                    if not target.paused(now_ns):
                        row["leased_until"] = leased_until
                        leased.append(Leased(cast(uuid.UUID, row["id"]), target.endpoint_id, event))
        await repository.insert_deliveries(session, rows)
        self.written += len(rows) - len(leased)
        self._leased = leased

    def take_leased(self) -> list[Leased]:
        """The deliveries the last `record` leased, handed over once. Taken after the round's
        transaction committed; the worker also takes (and drops) them before each round,
        so what a round whose commit failed leased is never sent."""
        leased, self._leased = self._leased, []
        return leased


def delivery_row(
    event: Event, endpoint_id: uuid.UUID, tenant_id: uuid.UUID, *, now_ns: int, replay: bool
) -> dict[str, object]:
    return {
        "id": new_id() if replay else first_delivery_id(event.id, endpoint_id, event.seq),
        "endpoint_id": endpoint_id,
        "tenant_id": tenant_id,
        "event_id": event.id,
        "event_seq": event.seq,
        "aggregate_id": event.aggregate_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now_ns,
        "leased_until": None,
        "last_status_code": None,
        "replay": 1 if replay else 0,
        "created_at": now_ns,
        "completed_at": None,
    }


@dataclass(slots=True)
class _Job:
    """One delivery's event to send. Not frozen (nor is `Outcome`): a frozen dataclass's
    `__init__` sets each field through `object.__setattr__`, three times slower, and the
    sender makes one of each per delivery."""

    delivery_id: uuid.UUID
    event: Event


@dataclass(frozen=True, slots=True)
class _Request:
    """One HTTP request: a single event, or a batch of an endpoint's due events."""

    endpoint_id: uuid.UUID
    url: str
    secrets: list[str]
    batched: bool
    jobs: list[_Job]
    unopened: str | None = None
    """Why the endpoint's secrets could not be opened: the attempt fails unsent."""
    health: _Health = field(default_factory=lambda: _Health())
    """What the endpoint's row said of its receiver when the request was made."""


@dataclass(frozen=True, slots=True)
class _Health:
    """An endpoint's receiver as its row last said: its throttling answers in a row, and
    since when every attempt failed (None: the last one succeeded)."""

    throttle_streak: int = 0
    failing_since: int | None = None


@dataclass(slots=True)
class _Answers:
    """What one endpoint answered in a round."""

    succeeded: bool = False
    first_failure: int | None = None
    gone: bool = False
    throttling: list[Outcome] = field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    """What one attempt got (one per delivery: not frozen, see `_Job`)."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    attempted_at: int
    answered_at: int
    """When the attempt ended: the response read, or the failure. A delivery that succeeds
    (or is dead-lettered) completed then, not when its outcome is recorded: the record
    waits for every request sent beside it, then for a transaction."""
    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int
    retry_after_s: float | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def batch_message_id(delivery_ids: Sequence[uuid.UUID]) -> str:
    """The `webhook-id` of a batch: derived from its deliveries, so the same batch sent
    again carries the same id (receivers deduplicate a batch's events by their own ids)."""
    joined = ":".join(sorted(identifier.hex for identifier in delivery_ids))
    return format_id(BATCH_ID_PREFIX, uuid.uuid5(DELIVERY_NAMESPACE, joined))


def batch_json(events: Sequence[Event]) -> bytes:
    """A CloudEvents JSON batch (`application/cloudevents-batch+json`): an array of events."""
    return b"[" + b",".join(cloudevent_json(event) for event in events) + b"]"


_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
"""httpcore's socket option (`httpcore._backends.base.SOCKET_OPTION`, not exported)."""


class _CheckedAddresses(httpcore.AsyncNetworkBackend):
    """Connects each host name to the addresses the sender checked for it (SSRF), whatever
    DNS would answer now. Requests name the host itself, so the pool keeps connections per
    host name and TLS verifies each one's certificate against that name. With the checked
    address in the URL and the name only in SNI, a keep-alive connection verified for one
    host was reused for another host at the same address and port (shared hosting, an
    SNI-routing load balancer), whose certificate was then never checked.

    A host with several addresses (IPv6 and IPv4, several servers) is tried at each in
    turn, in the resolver's order, until one connects (RFC 8305's fallback, one attempt at
    a time): only the first used to be tried, so one unreachable address (an IPv6 route
    that does not work, a server that is down) failed every delivery. Each attempt gets an
    equal share of what is left of the connect timeout, so an address that never answers
    leaves time for the next. Only checked addresses are ever tried, and TLS, which starts
    once the connection is made, verifies the host name whichever address answered."""

    def __init__(self) -> None:
        self._network = httpcore.AnyIOBackend()
        self._addresses: dict[str, tuple[str, ...]] = {}

    def pin(self, host: str, addresses: Sequence[str]) -> None:
        """Connect `host` to `addresses` (in this order) from now on (the sender checked
        them)."""
        if host not in self._addresses and len(self._addresses) >= RESOLVED_MAX:
            self._addresses.clear()  # a new connection to a host cleared here fails, safe
        self._addresses[host] = tuple(addresses[:CONNECT_ADDRESSES_MAX])

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._addresses.get(host)
        if not addresses:
            raise httpcore.ConnectError(f"no checked address for {host!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        failures: list[str] = []
        for index, address in enumerate(addresses):
            share = None
            if deadline is not None:
                share = max(deadline - time.monotonic(), 0.0) / (len(addresses) - index)
            try:
                return await self._network.connect_tcp(
                    address,
                    port,
                    timeout=share,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failure:
                if len(addresses) == 1:
                    raise
                failures.append(f"{address}: {type(failure).__name__}: {failure}")
                last = failure
        raise type(last)(f"no checked address of {host!r} connects ({'; '.join(failures)})")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _PinningTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool whose connections go where `_CheckedAddresses` says."""

    def __init__(self, addresses: _CheckedAddresses, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=addresses,
        )


class WebhookSender:
    """Sends due deliveries: claims a batch (a lease), groups it per endpoint, sends the
    requests concurrently, records the outcomes in bulk. A worker that dies while sending
    leaves the lease to expire, and the delivery is sent again with the same `webhook-id`
    (the same event id; a batch's id depends on which deliveries it groups)."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        *,
        clock: Clock,
        row_locks: bool,
        allow_private: bool,
        timeout_s: float,
        concurrency: int,
        batch_size_max: int,
        lease_s: float,
        response_max_bytes: int,
        disable_after_s: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._keyring = keyring
        self._opened: dict[tuple[uuid.UUID, str], str] = {}
        self._resolved: dict[str, tuple[int, ResolvedTarget]] = {}
        """URL: (until when, in clock ns, it is reused; its checked target)."""
        self._clock = clock
        self._row_locks = row_locks
        self._allow_private = allow_private
        self._batch_size_max = batch_size_max
        self._lease_ns = int(lease_s * NANOSECONDS_PER_SECOND)
        self._timeout_s = timeout_s
        """The whole attempt's limit: httpx's own limits are per connect, write and read, so
        a receiver sending a byte now and then would otherwise hold an attempt for ever."""
        self._response_max_bytes = response_max_bytes
        self._disable_after_ns = int(disable_after_s * NANOSECONDS_PER_SECOND)
        """0: an endpoint is never disabled for failing."""
        self._rng = rng or random.Random()
        self._limit = asyncio.Semaphore(concurrency)
        self._addresses = _CheckedAddresses()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(
            transport=transport or _PinningTransport(self._addresses, limits),
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            # The delivery log keeps the response's first bytes as they come (`aiter_raw`):
            # ask for them uncompressed, or a receiver's gzip is what the log shows.
            headers={"accept-encoding": "identity"},
        )
        self.delivered = 0

    async def close(self) -> None:
        await self._client.aclose()

    async def run_once(self) -> int:
        """One batch: the number of deliveries attempted."""
        return await self._send(await self._claim())

    async def send_leased(self, leased: Sequence[Leased]) -> int:
        """Send deliveries its worker's fan-out leased as it wrote them, with their events
        (`WebhookFanout.lease_ns`): no claim, and no second read of the events. Those of an
        endpoint disabled or deleted since are left to their lease (the claim does not take
        a disabled endpoint's deliveries either); those of an endpoint paused since go back
        to wait for the pause's end. The number of deliveries attempted."""
        if not leased:
            return 0
        now_ns = self._clock.now_ns()
        async with self._unit_of_work.begin() as session:
            endpoints = await repository.endpoints_by_id(
                session, {delivery.endpoint_id for delivery in leased}
            )
            enabled = {i: e for i, e in endpoints.items() if e.status == "enabled"}
            for endpoint_id, endpoint in list(enabled.items()):
                if endpoint.throttled_until is not None and now_ns < endpoint.throttled_until:
                    del enabled[endpoint_id]
                    await repository.postpone_deliveries(
                        session,
                        [d.delivery_id for d in leased if d.endpoint_id == endpoint_id],
                        until_ns=endpoint.throttled_until,
                    )
            secrets, unopened = await self._secrets(session, enabled.values())
        jobs = [
            (delivery.endpoint_id, _Job(delivery_id=delivery.delivery_id, event=delivery.event))
            for delivery in leased
            if delivery.endpoint_id in enabled
        ]
        return await self._send(self._requests(jobs, enabled, secrets, unopened))

    async def _send(self, requests: Sequence[_Request]) -> int:
        if not requests:
            return 0
        targets = await self._resolve({(r.endpoint_id, r.url) for r in requests})
        sent = await asyncio.gather(*(self._attempt(r, targets[r.endpoint_id]) for r in requests))
        outcomes = [outcome for batch in sent for outcome in batch]
        await self._record(outcomes, {r.endpoint_id: r.health for r in requests})
        return len(outcomes)

    async def _claim(self) -> list[_Request]:
        now_ns = self._clock.now_ns()
        if not self._row_locks:  # SQLite: look without the write lock first
            async with self._unit_of_work.read() as session:
                if not await repository.has_due_delivery(session, now_ns=now_ns):
                    return []
        async with self._unit_of_work.begin() as session:
            await repository.plan_with_indexes(session)
            due = await repository.claim_due_deliveries(
                session,
                now_ns=now_ns,
                limit=self._batch_size_max,
                lock=self._row_locks,
                leased_until=now_ns + self._lease_ns,
            )
            if not due:
                return []
            endpoints = await repository.endpoints_by_id(session, {d.endpoint_id for d in due})
            events = await repository.events_by_id(session, {d.event_id for d in due}, raw=True)
            secrets, unopened = await self._secrets(session, endpoints.values())
        jobs = [
            (claimed.endpoint_id, _Job(delivery_id=claimed.id, event=events[claimed.event_id]))
            for claimed in due
        ]
        return self._requests(jobs, endpoints, secrets, unopened)

    async def _secrets(
        self, session: AsyncSession, endpoints: Iterable[WebhookEndpoint]
    ) -> tuple[dict[uuid.UUID, list[str]], dict[uuid.UUID, str]]:
        """Each endpoint's signing secrets, opened; and why, for those that could not be."""
        now_ns = self._clock.now_ns()
        secrets: dict[uuid.UUID, list[str]] = {}
        unopened: dict[uuid.UUID, str] = {}
        for endpoint in endpoints:
            try:
                secrets[endpoint.id] = await endpoint_secrets(
                    session, endpoint, now_ns=now_ns, keyring=self._keyring, opened=self._opened
                )
            except (KeystoreUnavailable, DecryptionFailed, KeyDestroyed) as failure:
                # That endpoint's deliveries fail this attempt (and are retried); the
                # others' still go: one unopenable secret used to fail the whole round.
                secrets[endpoint.id] = []
                unopened[endpoint.id] = f"secret unavailable: {failure}"[:ERROR_LENGTH_MAX]
        return secrets, unopened

    @staticmethod
    def _requests(
        jobs: Iterable[tuple[uuid.UUID, _Job]],
        endpoints: Mapping[uuid.UUID, WebhookEndpoint],
        secrets: Mapping[uuid.UUID, list[str]],
        unopened: Mapping[uuid.UUID, str],
    ) -> list[_Request]:
        """The requests that send `jobs` (endpoint, job): each endpoint's in log order, in
        batches of up to its `batch_size_max`."""
        by_endpoint: dict[uuid.UUID, list[_Job]] = {}
        for endpoint_id, job in jobs:
            by_endpoint.setdefault(endpoint_id, []).append(job)
        requests = []
        for endpoint_id, endpoint_jobs in by_endpoint.items():
            endpoint_jobs.sort(key=lambda job: job.event.seq)  # a batch lists them in order
            endpoint = endpoints[endpoint_id]
            size = max(1, endpoint.batch_size_max)
            for start in range(0, len(endpoint_jobs), size):
                requests.append(
                    _Request(
                        endpoint_id=endpoint_id,
                        url=endpoint.url,
                        secrets=secrets[endpoint_id],
                        batched=size > 1,
                        jobs=endpoint_jobs[start : start + size],
                        unopened=unopened.get(endpoint_id),
                        health=_Health(endpoint.throttle_streak, endpoint.failing_since),
                    )
                )
        return requests

    async def _resolve(
        self, endpoints: set[tuple[uuid.UUID, str]]
    ) -> dict[uuid.UUID, ResolvedTarget | UnsafeWebhookUrl]:
        """Each endpoint's target, resolved and checked (SSRF), or as checked less than
        `RESOLVED_TTL_S` ago."""
        now_ns = self._clock.now_ns()
        targets: dict[uuid.UUID, ResolvedTarget | UnsafeWebhookUrl] = {}
        missing: list[tuple[uuid.UUID, str]] = []
        for endpoint_id, url in endpoints:
            kept = self._resolved.get(url)
            if kept is not None and now_ns < kept[0]:
                targets[endpoint_id] = kept[1]
            else:
                missing.append((endpoint_id, url))
        if not missing:
            return targets

        async def one(url: str) -> ResolvedTarget | UnsafeWebhookUrl:
            try:
                return await resolve_target(url, allow_private=self._allow_private)
            except UnsafeWebhookUrl as refused:
                return refused

        found = await asyncio.gather(*(one(url) for _, url in missing))
        until_ns = now_ns + RESOLVED_TTL_S * NANOSECONDS_PER_SECOND
        for (endpoint_id, url), target in zip(missing, found, strict=True):
            targets[endpoint_id] = target
            if isinstance(target, ResolvedTarget):
                if len(self._resolved) >= RESOLVED_MAX:
                    self._resolved.clear()
                self._resolved[url] = (until_ns, target)
        return targets

    async def _attempt(
        self, request: _Request, target: ResolvedTarget | UnsafeWebhookUrl
    ) -> list[Outcome]:
        async with self._limit:
            attempted_at = self._clock.now_ns()
            started = time.monotonic()
            status_code: int | None = None
            error: str | None = None
            body: str | None = None
            retry_after: float | None = None
            try:
                if isinstance(target, UnsafeWebhookUrl):
                    raise target
                if request.unopened is None:
                    async with asyncio.timeout(self._timeout_s):
                        status_code, body, retry_after = await self._post(
                            request, target, attempted_at
                        )
                else:
                    error = request.unopened
            except UnsafeWebhookUrl as refused:
                error = f"refused: {refused.detail}"
            except (httpx.TimeoutException, TimeoutError):
                error = "timed out"
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
            duration_ms = int((time.monotonic() - started) * 1000)
            answered_at = self._clock.now_ns()
            return [
                Outcome(
                    delivery_id=job.delivery_id,
                    endpoint_id=request.endpoint_id,
                    attempted_at=attempted_at,
                    answered_at=answered_at,
                    status_code=status_code,
                    error=None if error is None else error[:ERROR_LENGTH_MAX],
                    response_body=body,
                    duration_ms=duration_ms,
                    retry_after_s=retry_after,
                )
                for job in request.jobs
            ]

    async def _post(
        self, request: _Request, target: ResolvedTarget, attempted_at: int
    ) -> tuple[int, str, float | None]:
        if request.batched:
            body = batch_json([job.event for job in request.jobs])
            message_id = batch_message_id([job.delivery_id for job in request.jobs])
            content_type = "application/cloudevents-batch+json"
        else:
            body = cloudevent_json(request.jobs[0].event)
            message_id = format_id(EVENT_ID_PREFIX, request.jobs[0].event.id)
            content_type = "application/cloudevents+json"  # the CloudEvents JSON format's
        headers = signature_headers(
            message_id=message_id,
            timestamp_s=attempted_at // NANOSECONDS_PER_SECOND,
            body=body,
            secrets=request.secrets,
        )
        headers.update({"content-type": content_type, "user-agent": USER_AGENT})
        self._addresses.pin(target.host, target.addresses)
        built = self._client.build_request("POST", target.url(), content=body, headers=headers)
        response = await self._client.send(built, stream=True)
        try:
            kept = bytearray()
            async for chunk in response.aiter_raw():
                kept.extend(chunk[: self._response_max_bytes - len(kept)])
                if len(kept) >= self._response_max_bytes:
                    break
        finally:
            await response.aclose()
        retry_after = retry_after_s(
            response.headers.get("retry-after"), now_s=attempted_at / NANOSECONDS_PER_SECOND
        )
        # PostgreSQL cannot store U+0000 in text: one such byte in an answer used to fail the
        # round's record, so its deliveries (every endpoint's) were sent again and again.
        text = kept.decode(errors="replace").replace("\x00", "\ufffd")
        return response.status_code, text, retry_after

    async def _record(
        self, outcomes: Sequence[Outcome], health: Mapping[uuid.UUID, _Health]
    ) -> None:
        """Successes in bulk, each completed when its receiver answered; failures one by
        one, as each has its own retry state; then what the answers say of each endpoint
        (`health`: what its row said when the requests were made)."""
        succeeded: list[repository.Success] = []
        failed: list[Outcome] = []
        for outcome in outcomes:
            if outcome.succeeded and outcome.status_code is not None:
                succeeded.append(
                    repository.Success(
                        outcome.delivery_id, outcome.status_code, outcome.answered_at
                    )
                )
            else:
                failed.append(outcome)
        async with self._unit_of_work.begin() as session:
            await repository.plan_with_indexes(session)
            existing = await repository.mark_succeeded(session, succeeded)
            deliveries = await repository.deliveries_by_id(session, [o.delivery_id for o in failed])
            existing |= deliveries.keys()
            for outcome in failed:
                delivery = deliveries.get(outcome.delivery_id)
                if delivery is not None:  # its endpoint may have been deleted meanwhile
                    self._apply(delivery, outcome)
            await repository.insert_attempts(
                session,
                [
                    {
                        "id": new_id(),
                        "delivery_id": o.delivery_id,
                        "attempted_at": o.attempted_at,
                        "status_code": o.status_code,
                        "error": o.error,
                        "response_body": o.response_body,
                        "duration_ms": o.duration_ms,
                    }
                    for o in outcomes
                    if o.delivery_id in existing
                ],
            )
            await self._note_health(session, outcomes, health)
        self.delivered += sum(1 for o in outcomes if o.succeeded)

    async def _note_health(
        self,
        session: AsyncSession,
        outcomes: Sequence[Outcome],
        health: Mapping[uuid.UUID, _Health],
    ) -> None:
        """What a round's answers say of each endpoint, written only where it changes its
        row: a 410 disables it; a 429, 502, 503 or 504 (however many of its requests got
        one: one more in its streak) pauses it, its pending deliveries due no sooner than
        the pause's end; a success ends its streak and its failing; a failure starts its
        failing, and one that has failed for `webhooks_disable_after_days` disables it."""
        answers: dict[uuid.UUID, _Answers] = {}
        for outcome in outcomes:
            answered = answers.setdefault(outcome.endpoint_id, _Answers())
            if outcome.succeeded:
                answered.succeeded = True
                continue
            if answered.first_failure is None or outcome.answered_at < answered.first_failure:
                answered.first_failure = outcome.answered_at
            if outcome.status_code == 410:
                answered.gone = True
            elif outcome.status_code in THROTTLE_STATUSES:
                answered.throttling.append(outcome)
        now_ns = self._clock.now_ns()
        changed = {
            endpoint_id
            for endpoint_id, answered in answers.items()
            if self._changes(answered, health.get(endpoint_id, _Health()), now_ns)
        }
        if not changed:
            return
        await session.flush()  # the failures' own retries first: a pause may postpone them
        endpoints = await repository.endpoints_by_id(session, changed)
        for endpoint in endpoints.values():  # those deleted meanwhile are not there
            await self._update_health(session, endpoint, answers[endpoint.id], now_ns)

    def _changes(self, answered: _Answers, was: _Health, now_ns: int) -> bool:
        if answered.gone or answered.throttling:
            return True
        if answered.succeeded:
            return was.throttle_streak > 0 or was.failing_since is not None
        return was.failing_since is None or self._failed_long_enough(was.failing_since, now_ns)

    def _failed_long_enough(self, failing_since: int | None, now_ns: int) -> bool:
        return (
            failing_since is not None
            and self._disable_after_ns > 0
            and now_ns - failing_since >= self._disable_after_ns
        )

    async def _update_health(
        self, session: AsyncSession, endpoint: WebhookEndpoint, answered: _Answers, now_ns: int
    ) -> None:
        if answered.succeeded:
            endpoint.failing_since = None
            if not answered.throttling:
                endpoint.throttle_streak = 0
        elif endpoint.failing_since is None:
            endpoint.failing_since = answered.first_failure
        if answered.throttling:
            endpoint.throttle_streak += 1
            asked = [a.retry_after_s for a in answered.throttling if a.retry_after_s is not None]
            pause_s = throttle_pause_s(endpoint.throttle_streak, max(asked, default=None))
            latest = max(a.answered_at for a in answered.throttling)
            until_ns = latest + int(pause_s * NANOSECONDS_PER_SECOND)
            endpoint.throttled_until = max(endpoint.throttled_until or 0, until_ns)
            await repository.postpone_pending(
                session, endpoint.id, until_ns=endpoint.throttled_until, now_ns=now_ns
            )
        if endpoint.status != "enabled":
            return
        if answered.gone:
            self._disable(session, endpoint, "gone", "the receiver answered 410 Gone", now_ns)
        elif self._failed_long_enough(endpoint.failing_since, now_ns):
            days = self._disable_after_ns / (86_400 * NANOSECONDS_PER_SECOND)
            reason = f"every attempt failed for {days:g} days"
            self._disable(session, endpoint, "failing", reason, now_ns)

    @staticmethod
    def _disable(
        session: AsyncSession, endpoint: WebhookEndpoint, reason: str, detail: str, now_ns: int
    ) -> None:
        """Disable `endpoint` and tell its tenant through every other channel."""
        endpoint.status = "disabled"
        endpoint.disabled_reason = detail
        endpoint.updated_at = now_ns
        emit(
            session,
            tenant_id=endpoint.tenant_id,
            mode=Mode(endpoint.mode),
            type=ENDPOINT_DISABLED,
            subject=format_id(ENDPOINT_ID_PREFIX, endpoint.id),
            aggregate_id=endpoint.id,
            data={
                "endpoint_id": format_id(ENDPOINT_ID_PREFIX, endpoint.id),
                "reason": reason,
                "detail": detail,
                "failing_since": endpoint.failing_since,
                "disabled_at": now_ns,
            },
            occurred_at_ns=now_ns,
        )

    def _apply(self, delivery: WebhookDelivery, outcome: Outcome) -> None:
        now_ns = self._clock.now_ns()
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.leased_until = None
        delay = None if outcome.status_code == 410 else next_delay_s(delivery.attempts, self._rng)
        if delay is None:
            delivery.status = "dead"
            delivery.completed_at = outcome.answered_at
            return
        if outcome.retry_after_s is not None:
            delay = max(delay, outcome.retry_after_s)
        delivery.next_attempt_at = now_ns + int(delay * NANOSECONDS_PER_SECOND)

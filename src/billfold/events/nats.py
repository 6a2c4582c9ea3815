"""NATS JetStream: the channel that publishes events, and an idempotent durable consumer.

Subjects: `billfold.events.<tenant>.<mode>.<type without "com.billfold.">` (the prefix is
`BILLFOLD_NATS_SUBJECT_PREFIX`), e.g.
`billfold.events.ten_0192….test.transfer.posted.v1`, all in one stream (`BILLFOLD_EVENTS`
by default) that the channel creates when missing. A subscriber picks a tenant and mode, a
type or a family with wildcards (`billfold.events.ten_….live.transfer.>`).

Each message is the CloudEvents JSON with header `Nats-Msg-Id` set to the event id, so the
server drops a re-publish within its duplicate window; `IdempotentConsumer` drops older
duplicates by event id too. Events of one aggregate are published in order, and the
channel waits for every acknowledgement before its cursor moves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.types import EVENT_ID_PREFIX, Event, Reads, cloudevent_json
from billfold.kit.auth import TENANT_ID_PREFIX
from billfold.kit.ids import format_id

__all__ = [
    "SUBJECT_ROOT",
    "IdempotentConsumer",
    "NatsChannel",
    "PublishError",
    "connect",
    "subject_of",
]

SUBJECT_ROOT = "billfold.events"
_TYPE_PREFIX = "com.billfold."
DUPLICATE_WINDOW_S = 120.0
PUBLISH_WINDOW = 2000
"""Most publishes awaiting their acknowledgement at once (the client stalls beyond 4,000)."""
SUBJECTS_CACHED_MAX = 10_000
"""Subjects (per tenant, mode and type) the channel keeps rather than formats per event."""


def subject_of(event: Event, *, prefix: str = SUBJECT_ROOT) -> str:
    kind = event.type.removeprefix(_TYPE_PREFIX)
    return f"{prefix}.{format_id(TENANT_ID_PREFIX, event.tenant_id)}.{event.mode}.{kind}"


async def connect(url: str, *, timeout_s: float) -> Client:
    return await nats.connect(
        url, connect_timeout=timeout_s, max_reconnect_attempts=-1, allow_reconnect=True
    )


async def ensure_stream(js: JetStreamContext, *, stream: str, prefix: str) -> None:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[f"{prefix}.>"],
                duplicate_window=DUPLICATE_WINDOW_S,
            )
        )


class PublishError(Exception):
    """JetStream refused a message, or its acknowledgements did not all arrive in time."""


_HEADERS = (
    b"NATS/1.0\r\nNats-Msg-Id: %s_%%s\r\nContent-Type: application/cloudevents+json\r\n\r\n"
    % (EVENT_ID_PREFIX.encode())
)
"""A message's headers (NATS/1.0 block), with the event's hex id to fill in."""


def publish_frames(
    events: Sequence[Event],
    *,
    subject: Callable[[Event], bytes],
    reply: bytes,
    payload_max: int,
) -> bytes:
    """The NATS protocol's `HPUB` frames publishing `events` in order: each the CloudEvents
    JSON under `subject(event)`, with headers `Nats-Msg-Id` (the event id) and
    `Content-Type`, and reply subject `reply` + its index in `events`.

    What `Client.publish` writes for each, in one buffer for the window: its subject and
    header checks, header encoding and per-message bookkeeping cost 16 to 20 µs of the
    worker's CPU per event, these frames 3 to 4. Subjects are made here (`subject_of`, of
    an id, a mode and a checked type) and so are the headers, so no check is skipped."""
    frames = bytearray()
    for index, event in enumerate(events):
        payload = cloudevent_json(event)
        if len(payload) > payload_max:
            raise PublishError(f"event {event.id} is larger than the server's max_payload")
        headers = _HEADERS % event.id.hex.encode()
        frames += b"HPUB %s %s%d %d %d\r\n%s%s\r\n" % (
            subject(event),
            reply,
            index,
            len(headers),
            len(headers) + len(payload),
            headers,
            payload,
        )
    return bytes(frames)


async def _write(client: Client, frames: bytes) -> None:
    """Queue protocol frames on `client`'s connection, as its own `publish` does (its
    pending buffer, written out by its flusher; one entry for the whole window). nats-py
    has no public call for frames made ahead: this is the one place that reaches into it
    (pinned in the lock file; the channel's tests run against the real server)."""
    await client._send_command(frames)


class _Acks:
    """The acknowledgements of one window of publishes, collected by one subscription on
    the channel's own reply subjects (`<inbox>.<window>.<index>`)."""

    def __init__(self) -> None:
        self.window = 0
        self.expected = 0
        self.received: set[int] = set()
        self.error: str | None = None
        self.done = asyncio.Event()

    def start(self, expected: int) -> int:
        self.window += 1
        self.expected = expected
        self.received = set()
        self.error = None
        self.done.clear()
        return self.window

    async def on_reply(self, message: Msg) -> None:
        _, window, index = message.subject.rsplit(".", 2)
        if int(window) != self.window:
            return  # a late ack of an earlier, failed window
        if message.headers and message.headers.get("Status") == "503":
            self.error = "no stream takes the subject (no responders)"
        elif b'"error"' in message.data:  # a stored message's ack is {"stream":…,"seq":…}
            answer = json.loads(message.data)
            if "error" in answer:
                self.error = str(answer["error"].get("description", answer["error"]))
        self.received.add(int(index))
        if self.error is not None or len(self.received) >= self.expected:
            self.done.set()


class NatsChannel:
    """The `nats` channel: publishes each event to JetStream, in order, and awaits acks.

    A window of events is published with no wait between messages (plain publishes with
    reply subjects, no per-message future or task), then every acknowledgement is awaited
    once: the loop yields once per window, not once per event, so the channel keeps its
    pace beside the worker's other loops."""

    name = "nats"
    selects_tenants = False

    def __init__(self, url: str, *, stream: str, prefix: str, timeout_s: float) -> None:
        self._url = url
        self._stream = stream
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._inbox = ""
        self._acks = _Acks()
        self._subjects: dict[tuple[uuid.UUID, str, str], bytes] = {}
        self.published = 0

    @property
    def reads(self) -> Reads:
        """The payloads as stored text: spliced into the envelope, never decoded."""
        return Reads.RAW

    async def tenants(self, session: AsyncSession) -> None:
        return None

    async def open(self) -> None:
        client = await connect(self._url, timeout_s=self._timeout_s)
        self._client = client
        self._js = client.jetstream(timeout=self._timeout_s)
        await ensure_stream(self._js, stream=self._stream, prefix=self._prefix)
        self._inbox = client.new_inbox()
        await client.subscribe(
            f"{self._inbox}.*.*", cb=self._acks.on_reply, pending_msgs_limit=4 * PUBLISH_WINDOW
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.drain()
            self._client = self._js = None

    async def deliver(self, events: Sequence[Event]) -> None:
        if self._client is None:
            await self.open()
        for start in range(0, len(events), PUBLISH_WINDOW):
            await self._publish(events[start : start + PUBLISH_WINDOW])
            self.published += len(events[start : start + PUBLISH_WINDOW])

    async def _publish(self, events: Sequence[Event]) -> None:
        client = self._client
        assert client is not None
        if not client.is_connected:  # reconnecting: the round fails and comes back later
            raise PublishError("not connected to NATS")
        window = self._acks.start(len(events))
        frames = publish_frames(
            events,
            subject=self._subject,
            reply=f"{self._inbox}.{window}.".encode(),
            payload_max=client.max_payload,
        )
        await _write(client, frames)  # in order on one connection: stored in order
        await client.flush(timeout=max(1, int(self._timeout_s)))
        try:
            await asyncio.wait_for(self._acks.done.wait(), self._timeout_s)
        except TimeoutError as error:
            missing = len(events) - len(self._acks.received)
            raise PublishError(f"{missing} of {len(events)} acknowledgements missing") from error
        if self._acks.error is not None:
            raise PublishError(self._acks.error)

    def _subject(self, event: Event) -> bytes:
        key = (event.tenant_id, event.mode, event.type)
        subject = self._subjects.get(key)
        if subject is None:
            if len(self._subjects) >= SUBJECTS_CACHED_MAX:
                self._subjects.clear()
            subject = self._subjects[key] = subject_of(event, prefix=self._prefix).encode()
        return subject

    async def record(self, session: AsyncSession, events: Sequence[Event], now_ns: int) -> None:
        return None


Handler = Callable[[dict[str, Any]], Awaitable[None]]


class IdempotentConsumer:
    """A durable pull consumer that hands each event id to `handler` once (it remembers the
    last `seen_max` ids) and acknowledges after the handler returns: a handler that raises
    gets the message again (at least once, never twice in a row for one id)."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        subject: str,
        seen_max: int = 100_000,
    ) -> None:
        self._js = js
        self._stream = stream
        self._durable = durable
        self._subject = subject
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_max = seen_max
        self._subscription: JetStreamContext.PullSubscription | None = None
        self.duplicates = 0

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        if self._subscription is None:
            self._subscription = await self._js.pull_subscribe(
                self._subject,
                durable=self._durable,
                stream=self._stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )
        return self._subscription

    async def poll(self, handler: Handler, *, batch: int = 100, timeout_s: float = 1.0) -> int:
        """Fetch up to `batch` messages and handle them in order; the number handled."""
        subscription = await self._subscribe()
        try:
            messages = await subscription.fetch(batch, timeout=timeout_s)
        except TimeoutError:
            return 0
        handled = 0
        for message in messages:
            envelope = json.loads(message.data)
            event_id = str(envelope["id"])
            if event_id in self._seen:
                self.duplicates += 1
            else:
                await handler(envelope)
                self._remember(event_id)
                handled += 1
            await message.ack()
        return handled

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)

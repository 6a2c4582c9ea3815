"""NATS JetStream against the real local server (127.0.0.1:4222): events are published to
per-tenant, per-type subjects and read back by a durable consumer, in order per aggregate,
each event id once even when the dispatcher publishes a batch twice."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError

from billfold.events import repository
from billfold.events.nats import (
    IdempotentConsumer,
    NatsChannel,
    PublishError,
    publish_frames,
    subject_of,
)
from billfold.events.outbox import emit
from billfold.events.types import Event, cloudevent_json
from billfold.identity.outbox_events import IDENTITY_EVENT_TYPES
from billfold.kit.auth import Mode
from billfold.kit.ids import new_id
from events.events_support import harness

pytestmark = pytest.mark.anyio

NATS_URL = os.environ.get("BILLFOLD_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
async def stream_name() -> AsyncIterator[tuple[str, str]]:
    """A stream and subject prefix of this test's own, deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    try:
        client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"NATS is required under CI=true and is unreachable: {error}")
        pytest.skip(f"NATS unreachable: {error}")
    name, prefix = f"BFTEST_{suffix}", f"bftest.{suffix}"
    try:
        yield name, prefix
    finally:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(name)
        await client.close()


async def test_a_durable_consumer_reads_every_event_once_in_order_per_aggregate(
    isolated_database_url: str, stream_name: tuple[str, str]
) -> None:
    stream, prefix = stream_name
    async with harness(
        isolated_database_url,
        nats_url=NATS_URL,
        nats_stream=stream,
        nats_subject_prefix=prefix,
        events_batch_size_max=25,
    ) as h:
        aggregates = [new_id() for _ in range(5)]
        for step in range(10):
            async with h.unit_of_work.begin() as session:
                for aggregate in aggregates:
                    emit(
                        session,
                        tenant_id=h.tenant_id,
                        mode=Mode.TEST,
                        type="com.billfold.payment.updated.v1",
                        subject=f"pay_{aggregate.hex}",
                        aggregate_id=aggregate,
                        data={"step": step},
                    )
        assert h.worker.nats is not None
        published = h.worker.nats.published  # the bootstrap's API key events
        await h.worker.drain()
        nats_dispatcher = next(d for d in h.worker.dispatchers if d.channel.name == "nats")
        assert h.worker.nats.published - published == 50
        # A crash before the cursor moved: the same batch published again, same ids.
        events = await _events(h, "test")
        await h.worker.nats.deliver(events[:20])
        client = await nats.connect(NATS_URL)
        try:
            # Older than the server's duplicate window: only the consumer can drop it.
            first = f"{prefix}.ten_{h.tenant_id.hex}.test.payment.updated.v1"
            late_copy = json.loads(
                (await client.jetstream().get_last_msg(stream, first)).data or b""
            )
            await client.jetstream().publish(
                f"{prefix}.ten_{h.tenant_id.hex}.test.payment.updated.v1",
                json.dumps(late_copy).encode(),
            )
            consumer = IdempotentConsumer(
                client.jetstream(),
                stream=stream,
                durable="test-durable",
                subject=f"{prefix}.ten_{h.tenant_id.hex}.test.payment.>",
            )
            received: list[dict[str, Any]] = []

            async def handle(envelope: dict[str, Any]) -> None:
                received.append(envelope)

            while await consumer.poll(handle, batch=20, timeout_s=1.0):
                pass
            assert consumer.duplicates == 1
        finally:
            await client.close()
        assert nats_dispatcher.channel.name == "nats"
    assert len(received) == 50
    assert len({r["id"] for r in received}) == 50
    for aggregate in aggregates:
        steps = [r["data"]["step"] for r in received if r["subject"] == f"pay_{aggregate.hex}"]
        assert steps == list(range(10))
    assert received[0]["type"] == "com.billfold.payment.updated.v1"
    assert received[0]["specversion"] == "1.0"


async def _events(h: Any, mode: str) -> list[Any]:
    """The tenant's events of `mode`, less identity's (the bootstrap's API keys)."""
    async with h.unit_of_work.begin() as session:
        found = await repository.tenant_events(
            session, tenant_id=h.tenant_id, mode=mode, after_seq=0, limit=100
        )
    return [e for e in found if e.type not in IDENTITY_EVENT_TYPES]


async def test_the_server_drops_a_republished_event_by_its_id(
    isolated_database_url: str, stream_name: tuple[str, str]
) -> None:
    stream, prefix = stream_name
    async with harness(
        isolated_database_url, nats_url=NATS_URL, nats_stream=stream, nats_subject_prefix=prefix
    ) as h:
        async with h.unit_of_work.begin() as session:
            emit(
                session,
                tenant_id=h.tenant_id,
                mode=Mode.LIVE,
                type="com.billfold.payment.captured.v1",
                subject=f"pay_{uuid.uuid4().hex}",
                aggregate_id=new_id(),
                data={},
            )
        await h.worker.drain()
        events = await _events(h, "live")
        assert h.worker.nats is not None
        client = await nats.connect(NATS_URL)
        try:
            stored = (await client.jetstream().stream_info(stream)).state.messages
            await h.worker.nats.deliver(events)
            info = await client.jetstream().stream_info(stream)
            message = await client.jetstream().get_last_msg(
                stream, f"{prefix}.ten_{h.tenant_id.hex}.live.payment.captured.v1"
            )
        finally:
            await client.close()
    assert info.state.messages == stored
    assert json.loads(message.data or b"{}")["id"] == f"evt_{events[0].id.hex}"
    assert message.headers == {
        "Nats-Msg-Id": f"evt_{events[0].id.hex}",
        "Content-Type": "application/cloudevents+json",
    }


def _event(data: dict[str, Any], *, seq: int) -> Event:
    aggregate = new_id()
    return Event(
        id=new_id(),
        tenant_id=uuid.uuid4(),
        mode="test",
        type="com.billfold.payment.captured.v1",
        subject=f"pay_{aggregate.hex}",
        aggregate_id=aggregate,
        partition=3,
        data=data,
        occurred_at=1_700_000_000_123_456_789,
        seq=seq,
    )


async def test_the_channels_frames_are_what_nats_py_writes_for_each_publish(
    stream_name: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`publish_frames` writes, for a window at once, the bytes nats-py's own `publish`
    queues for each message with the same subject, reply and headers."""
    _, prefix = stream_name
    events = [
        _event({"amount": "250", "note": 'é "quoted" \\ \u2028'}, seq=1),
        _event({}, seq=2),
        _event({"n": list(range(100))}, seq=10**12),
    ]
    queued: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        queued.append(command)

    client = await nats.connect(NATS_URL)
    try:
        monkeypatch.setattr(client, "_send_command", capture)
        for index, event in enumerate(events):
            await client.publish(
                subject_of(event, prefix=prefix),
                cloudevent_json(event),
                reply=f"_INBOX.abc.7.{index}",
                headers={
                    "Nats-Msg-Id": f"evt_{event.id.hex}",
                    "Content-Type": "application/cloudevents+json",
                },
            )
        frames = publish_frames(
            events,
            subject=lambda event: subject_of(event, prefix=prefix).encode(),
            reply=b"_INBOX.abc.7.",
            payload_max=client.max_payload,
        )
    finally:
        monkeypatch.undo()
        await client.close()
    assert len(queued) == 3 and frames == b"".join(queued)


def test_an_event_larger_than_the_servers_max_payload_is_refused() -> None:
    event = _event({"blob": "x" * 2000}, seq=1)
    with pytest.raises(PublishError, match="max_payload"):
        publish_frames([event], subject=lambda _: b"s", reply=b"r.", payload_max=1000)


async def test_a_channel_that_lost_its_connection_fails_the_round_unsent(
    stream_name: tuple[str, str],
) -> None:
    stream, prefix = stream_name
    channel = NatsChannel(NATS_URL, stream=stream, prefix=prefix, timeout_s=2)
    await channel.open()
    await channel.close()  # drained and closed: nothing is queued on a dead connection
    channel._client = client = await nats.connect(NATS_URL)
    await client.close()
    with pytest.raises(PublishError, match="not connected"):
        await channel.deliver([_event({}, seq=1)])
    assert channel.published == 0

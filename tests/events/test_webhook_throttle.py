"""Throttling (Standard Webhooks, "Delivery success and failure": 429 asks the sender to
throttle, and so do 502 and 504, the receiver being under load). Billfold pauses the whole
endpoint on such an answer, and on a 503: nothing is sent to it until the pause ends, its
pending deliveries (and those written meanwhile) wait for that end, the pause doubles with
each such answer in a row, a `Retry-After` lengthens it, and the first success ends the
streak."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from billfold.events.models import WebhookDelivery, WebhookEndpoint
from billfold.events.types import Event
from billfold.events.webhooks import (
    THROTTLE_FIRST_S,
    THROTTLE_MAX_S,
    THROTTLE_RETRY_AFTER_MAX_S,
    Leased,
    throttle_pause_s,
)
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from events.events_support import (
    Harness,
    Received,
    Receiver,
    Reply,
    add_endpoint,
    answered_once,
    deliveries,
    emit_event,
    endpoint_row,
    harness,
)

pytestmark = pytest.mark.anyio

S = NANOSECONDS_PER_SECOND


@pytest.mark.parametrize(
    ("streak", "retry_after", "pause"),
    [
        (1, None, 5),
        (2, None, 10),
        (3, None, 20),
        (7, None, 300),  # 5 * 2**6 = 320: at most five minutes
        (1000, None, 300),
        (1, 120.0, 120),  # the receiver's wait when it is longer
        (3, 2.0, 20),  # ... never shorter than the streak's own
        (1, 86_400.0, 3600),  # at most an hour
        (0, None, 5),  # a streak is at least the answer at hand
    ],
)
def test_the_pause_doubles_with_the_streak_and_honours_retry_after(
    streak: int, retry_after: float | None, pause: int
) -> None:
    assert throttle_pause_s(streak, retry_after) == pause
    assert THROTTLE_FIRST_S <= throttle_pause_s(streak, retry_after) <= THROTTLE_RETRY_AFTER_MAX_S
    assert throttle_pause_s(streak, None) <= THROTTLE_MAX_S


class Script:
    """A receiver's answers in turn (the last one repeats), and the moment each came."""

    def __init__(self, clock: ManualClock, *replies: Reply) -> None:
        self._clock = clock
        self._replies: Iterator[Reply] = iter(replies)
        self._last = replies[-1]
        self.answered_at: list[int] = []

    def __call__(self, _: Received) -> Reply:
        self.answered_at.append(self._clock.now_ns())
        return next(self._replies, self._last)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_throttling_answer_pauses_the_whole_endpoint(
    isolated_database_url: str, status: int
) -> None:
    clock = ManualClock()
    script = Script(clock, Reply(status=status), Reply(status=200))
    with Receiver(script) as receiver:
        async with answered_once(isolated_database_url, clock, receiver) as (h, endpoint):
            paused = await endpoint_row(h, endpoint.id)
            assert paused.throttle_streak == 1
            assert paused.throttled_until == script.answered_at[0] + THROTTLE_FIRST_S * S
            # Another aggregate's event: not held by the first one's order, held by the pause.
            await emit_event(h)
            await h.worker.drain()
            assert len(receiver.received) == 1
            waiting = await deliveries(h)
            assert all(d.next_attempt_at >= paused.throttled_until for d in waiting)
            clock.advance(seconds=THROTTLE_FIRST_S * 1.2)  # past the first retry's jitter too
            await h.worker.drain()
            done = await deliveries(h)
            recovered = await endpoint_row(h, endpoint.id)
    assert len(receiver.received) == 3
    assert [d.status for d in done] == ["succeeded", "succeeded"]
    assert recovered.throttle_streak == 0


async def test_other_failures_pause_nothing(isolated_database_url: str) -> None:
    clock = ManualClock()
    script = Script(clock, Reply(status=500), Reply(status=200))
    with Receiver(script) as receiver:
        async with answered_once(isolated_database_url, clock, receiver) as (h, endpoint):
            await emit_event(h)
            await h.worker.drain()
            row = await endpoint_row(h, endpoint.id)
    assert len(receiver.received) == 2
    assert row.throttled_until is None and row.throttle_streak == 0


async def test_the_pause_doubles_while_the_answers_go_on_and_retry_after_lengthens_it(
    isolated_database_url: str,
) -> None:
    clock = ManualClock()
    script = Script(
        clock,
        Reply(status=429),
        Reply(status=429),  # the second round sends two requests
        Reply(status=429),
        Reply(status=429, headers={"Retry-After": "7200"}),
    )
    with Receiver(script) as receiver:
        async with answered_once(isolated_database_url, clock, receiver) as (h, endpoint):
            first = await endpoint_row(h, endpoint.id)
            clock.advance(seconds=THROTTLE_FIRST_S * 1.2)
            await emit_event(h)  # due now, but sent with the retry only after the pause
            await h.worker.drain()
            second = await endpoint_row(h, endpoint.id)
            clock.advance(seconds=2 * THROTTLE_FIRST_S * 1.2)
            await h.worker.drain()
            third = await endpoint_row(h, endpoint.id)
    assert len(script.answered_at) == 4  # 1, then the retry and the new event, then 1:
    # the first event's second failure put its own retry 5 minutes off.
    assert [first.throttle_streak, second.throttle_streak, third.throttle_streak] == [1, 2, 3]
    assert first.throttled_until == script.answered_at[0] + THROTTLE_FIRST_S * S
    assert second.throttled_until == script.answered_at[2] + 2 * THROTTLE_FIRST_S * S
    # Retry-After: 7200 asks for two hours; a pause is at most an hour.
    assert third.throttled_until == script.answered_at[3] + THROTTLE_RETRY_AFTER_MAX_S * S
    assert len(receiver.received) == 4


async def pause(h: Harness, endpoint_id: uuid.UUID, until_ns: int) -> None:
    async with h.unit_of_work.begin() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(throttled_until=until_ns, throttle_streak=1)
        )


async def test_the_fan_out_hands_over_nothing_of_a_paused_endpoint(
    isolated_database_url: str,
) -> None:
    """A running worker's fan-out leases the first in line and hands them to its sender;
    a paused endpoint's deliveries it writes unleased, due when the pause ends."""
    clock = ManualClock()
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            endpoint = await add_endpoint(h, receiver.url)
            until = clock.now_ns() + 60 * S
            await pause(h, endpoint.id, until)
            await emit_event(h)
            h.worker.fanout.lease_ns = 60 * S  # as a running worker's fan-out on PostgreSQL
            await h.worker.sequence()
            await h.worker.dispatch()  # fans out, then sends what it handed over
            [delivery] = await deliveries(h)
    assert receiver.received == []
    assert delivery.leased_until is None and delivery.next_attempt_at == until


async def test_a_handed_over_delivery_of_an_endpoint_paused_since_waits_unattempted(
    isolated_database_url: str,
) -> None:
    """The fan-out leased a delivery and handed it over; the endpoint was paused before its
    sender sent it (another worker's answer): it is released, due at the pause's end, and
    no attempt is counted."""
    clock = ManualClock()
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            endpoint = await add_endpoint(h, receiver.url)
            event_id = await emit_event(h)
            await h.worker.sequence()
            await h.worker.dispatch()  # writes the delivery (unleased: not a running worker)
            [delivery] = await deliveries(h)
            until = clock.now_ns() + 60 * S
            await pause(h, endpoint.id, until)
            async with h.unit_of_work.begin() as session:
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery.id)
                    .values(leased_until=clock.now_ns() + 60 * S)
                )
            event = Event(
                id=event_id,
                tenant_id=h.tenant_id,
                mode="test",
                type="com.billfold.payment.captured.v1",
                subject="pay_x",
                aggregate_id=delivery.aggregate_id,
                partition=0,
                data={},
                occurred_at=0,
                seq=delivery.event_seq,
            )
            sent = await h.worker.sender.send_leased([Leased(delivery.id, endpoint.id, event)])
            [after] = await deliveries(h)
    assert sent == 0 and receiver.received == []
    assert after.leased_until is None and after.attempts == 0
    assert after.next_attempt_at == until

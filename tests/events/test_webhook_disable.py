"""An endpoint that fails every attempt for `webhooks_disable_after_days` is disabled, and a
`com.billfold.webhook_endpoint.disabled.v1` event tells its tenant through every other
channel (Standard Webhooks: when delivery fails consistently over a long period, notify the
consumer some other way and disable the endpoint); so does a 410 Gone. A success in between
starts the count again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from billfold.events import service
from billfold.events.models import OutboxEvent
from billfold.events.webhooks import ENDPOINT_DISABLED
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from events.events_support import (
    Harness,
    Received,
    Receiver,
    Reply,
    answered_once,
    emit_event,
    endpoint_row,
    scope,
)

pytestmark = pytest.mark.anyio

S = NANOSECONDS_PER_SECOND
DAY_S = 86_400


class Answers:
    """A receiver's answers in turn (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self._statuses: Iterator[int] = iter(statuses)
        self._last = statuses[-1]

    def __call__(self, _: Received) -> Reply:
        return Reply(status=next(self._statuses, self._last))


async def disabled_events(h: Harness) -> list[OutboxEvent]:
    async with h.unit_of_work.read() as session:
        found = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == ENDPOINT_DISABLED)
        )
        return list(found)


async def fail_each_day(h: Harness, clock: ManualClock, days: int) -> None:
    """A new event every day, each attempt failing (the earlier events' retries too)."""
    for _ in range(days):
        clock.advance(seconds=DAY_S)
        await emit_event(h)
        await h.worker.drain()


async def test_an_endpoint_failing_every_attempt_for_days_is_disabled_and_an_event_says_so(
    isolated_database_url: str,
) -> None:
    clock = ManualClock()
    with Receiver(Answers(500)) as receiver:
        async with answered_once(
            isolated_database_url, clock, receiver, webhooks_disable_after_days=3
        ) as (h, endpoint):
            first_failure = clock.now_ns()
            started = await endpoint_row(h, endpoint.id)
            assert started.failing_since == first_failure and started.status == "enabled"
            await fail_each_day(h, clock, 2)
            assert (await endpoint_row(h, endpoint.id)).status == "enabled"  # two days only
            assert await disabled_events(h) == []
            await fail_each_day(h, clock, 1)
            disabled = await endpoint_row(h, endpoint.id)
            [event] = await disabled_events(h)
            attempts = len(receiver.received)
            await fail_each_day(h, clock, 1)  # a disabled endpoint is sent nothing new
    assert len(receiver.received) == attempts
    assert disabled.status == "disabled"
    assert disabled.disabled_reason == "every attempt failed for 3 days"
    assert event.tenant_id == h.tenant_id and event.aggregate_id == endpoint.id
    assert event.subject == f"whe_{endpoint.id.hex}"
    assert event.data == {
        "endpoint_id": f"whe_{endpoint.id.hex}",
        "reason": "failing",
        "detail": "every attempt failed for 3 days",
        "failing_since": first_failure,
        "disabled_at": event.occurred_at,
    }


async def test_a_success_starts_the_count_again(isolated_database_url: str) -> None:
    clock = ManualClock()
    # Day 0 fails, day 2 succeeds (with day 0's retry), then failures again.
    with Receiver(Answers(500, 500, 500, 200, 200, 500)) as receiver:
        async with answered_once(
            isolated_database_url, clock, receiver, webhooks_disable_after_days=3
        ) as (h, endpoint):
            await fail_each_day(h, clock, 2)
            recovered = await endpoint_row(h, endpoint.id)
            await fail_each_day(h, clock, 2)
            failing_again = await endpoint_row(h, endpoint.id)
            disabled = await disabled_events(h)
    assert len(receiver.received) >= 5
    assert recovered.failing_since is None and recovered.status == "enabled"
    assert failing_again.failing_since is not None and failing_again.status == "enabled"
    assert disabled == []


async def test_with_zero_days_a_failing_endpoint_stays_enabled(isolated_database_url: str) -> None:
    """Failing for longer than the default (5 days) and than the retry schedule (3 days)."""
    clock = ManualClock()
    with Receiver(Answers(500)) as receiver:
        async with answered_once(
            isolated_database_url, clock, receiver, webhooks_disable_after_days=0
        ) as (h, endpoint):
            await fail_each_day(h, clock, 8)
            row = await endpoint_row(h, endpoint.id)
    assert len(receiver.received) > 8
    assert row.status == "enabled" and row.failing_since is not None


async def test_410_gone_says_so_with_an_event(isolated_database_url: str) -> None:
    clock = ManualClock()
    with Receiver(Answers(410)) as receiver:
        async with answered_once(isolated_database_url, clock, receiver) as (h, endpoint):
            [event] = await disabled_events(h)
    assert len(receiver.received) == 1
    assert event.data["reason"] == "gone"
    assert event.data["detail"] == "the receiver answered 410 Gone"
    assert event.data["endpoint_id"] == f"whe_{endpoint.id.hex}"


async def test_enabling_it_again_counts_the_failing_from_then(isolated_database_url: str) -> None:
    clock = ManualClock()
    with Receiver(Answers(500)) as receiver:
        async with answered_once(
            isolated_database_url, clock, receiver, webhooks_disable_after_days=3
        ) as (h, endpoint):
            await fail_each_day(h, clock, 3)
            assert (await endpoint_row(h, endpoint.id)).status == "disabled"
            async with h.unit_of_work.begin() as session:
                await service.update_endpoint(
                    session,
                    scope=scope(h),
                    endpoint_id=endpoint.id,
                    change=service.EndpointChange(enabled=True),
                    allow_private=True,
                    now_ns=clock.now_ns(),
                )
            await fail_each_day(h, clock, 1)  # fails again at once: one day, not four
            again = await endpoint_row(h, endpoint.id)
            await fail_each_day(h, clock, 3)
            disabled = await endpoint_row(h, endpoint.id)
            events = await disabled_events(h)
    assert len(receiver.received) > 4
    assert again.status == "enabled" and again.failing_since is not None
    assert disabled.status == "disabled" and len(events) == 2

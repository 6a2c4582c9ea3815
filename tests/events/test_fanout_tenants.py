"""The webhook fan-out reads only the events of tenants with an enabled endpoint, moves its
cursors past the others' all the same, and wakes the sender only when it wrote deliveries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.dispatch import ChannelDispatcher
from billfold.events.models import EventCursor, WebhookDelivery
from billfold.events.types import EVENT_PARTITIONS, Event
from billfold.identity import service as identity_service
from events.events_support import Harness, Receiver, add_endpoint, deliveries, emit_event, harness

pytestmark = pytest.mark.anyio


def fanout_of(h: Harness) -> ChannelDispatcher:
    return next(d for d in h.worker.dispatchers if d.channel is h.worker.fanout)


async def other_tenant(h: Harness) -> uuid.UUID:
    async with h.unit_of_work.begin() as session:
        made = await identity_service.bootstrap_tenant(
            session, name="No endpoints", now_ns=time.time_ns()
        )
    return made.tenant.id


async def emit_for(h: Harness, tenant_id: uuid.UUID) -> uuid.UUID:
    """An event of `tenant_id` (the harness's helper emits for its own tenant)."""
    own = h.tenant_id
    h.tenant_id = tenant_id
    try:
        return await emit_event(h)
    finally:
        h.tenant_id = own


async def fanout_positions(h: Harness) -> set[int]:
    async with h.unit_of_work.read() as session:
        rows = await session.scalars(
            select(EventCursor.position).where(EventCursor.channel == h.worker.fanout.name)
        )
        return set(rows)


async def last_seq(h: Harness) -> int:
    async with h.unit_of_work.read() as session:
        return await repository.last_seq(session)


async def test_the_fan_out_reads_only_tenants_with_an_endpoint_and_passes_the_rest(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Event] = []
    events_after = repository.events_after

    async def recorded(session: AsyncSession, **arguments: Any) -> list[Event]:
        events = await events_after(session, **arguments)
        if arguments.get("tenants") is not None:  # only the fan-out narrows its reads
            read.extend(events)
        return events

    monkeypatch.setattr(repository, "events_after", recorded)
    with Receiver() as receiver:
        async with harness(
            isolated_database_url, events_partitions_per_claim=EVENT_PARTITIONS
        ) as h:
            quiet = await other_tenant(h)
            await h.worker.drain()
            await add_endpoint(h, receiver.url)
            before = [await emit_for(h, quiet) for _ in range(5)]
            wanted = await emit_event(h)
            after = [await emit_for(h, quiet) for _ in range(5)]
            await h.worker.drain()
            assert [d.event_id for d in await deliveries(h)] == [wanted]
            assert {e.tenant_id for e in read} == {h.tenant_id}
            assert not {e.id for e in read} & {*before, *after}
            assert await fanout_positions(h) == {await last_seq(h)}
    assert len(receiver.received) == 1


async def test_with_no_endpoint_anywhere_the_fan_out_reads_nothing_and_keeps_up(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(isolated_database_url, events_partitions_per_claim=EVENT_PARTITIONS) as h:
        for _ in range(3):
            await emit_event(h)
        await h.worker.sequence()
        events_after = repository.events_after

        async def unexpected(session: AsyncSession, **arguments: Any) -> list[Event]:
            assert arguments.get("tenants") is None, "the fan-out read events"
            return await events_after(session, **arguments)

        monkeypatch.setattr(repository, "events_after", unexpected)
        await fanout_of(h).run_once()
        assert await fanout_positions(h) == {await last_seq(h)}
        assert await deliveries(h) == []


async def test_an_event_numbered_while_the_fan_out_reads_is_fanned_out_once(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of the log is read before the events: one numbered in between comes back
    with them, and the cursors must move past it too, not only to the end as read (the
    next round would fan it out again: a duplicate delivery id). PostgreSQL only, in effect:
    each statement there sees what was committed before it; SQLite reads from one snapshot."""
    with Receiver() as receiver:
        async with harness(
            isolated_database_url, events_partitions_per_claim=EVENT_PARTITIONS
        ) as h:
            await add_endpoint(h, receiver.url)
            first = await emit_event(h)
            await h.worker.sequence()
            real_last_seq = repository.last_seq
            numbered_meanwhile: list[uuid.UUID] = []

            async def then_another(session: AsyncSession) -> int:
                end = await real_last_seq(session)
                if not numbered_meanwhile:
                    numbered_meanwhile.append(await emit_event(h))
                    await h.worker.sequence()
                return end

            fanout = fanout_of(h)
            fanout._idle = False  # straight to the read (no look at the end first)
            with monkeypatch.context() as patch:
                patch.setattr(repository, "last_seq", then_another)
                await fanout.run_once()
            await fanout.run_once()
            assert [d.event_id for d in await deliveries(h)] == [first, *numbered_meanwhile]
            assert await fanout_positions(h) == {await last_seq(h)}


async def test_the_sender_is_woken_only_by_a_round_that_wrote_deliveries(
    isolated_database_url: str,
) -> None:
    with Receiver() as receiver:
        async with harness(
            isolated_database_url, events_partitions_per_claim=EVENT_PARTITIONS
        ) as h:
            wake = h.worker._wake_sender
            await emit_event(h)
            await h.worker.sequence()
            await h.worker._dispatch_step(fanout_of(h))
            assert not wake.is_set()  # no endpoint: nothing to send
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.sequence()
            await h.worker._dispatch_step(fanout_of(h))
            assert wake.is_set()


async def test_tenants_with_endpoints_are_the_enabled_ones(isolated_database_url: str) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            endpoint = await add_endpoint(h, receiver.url)
            async with h.unit_of_work.begin() as session:
                assert await repository.tenants_with_endpoints(session) == {h.tenant_id}
                stored = await session.get(type(endpoint), endpoint.id)
                assert stored is not None
                stored.status = "disabled"
            async with h.unit_of_work.read() as session:
                found: Collection[uuid.UUID] = await repository.tenants_with_endpoints(session)
                assert found == set()
                assert await session.scalar(select(WebhookDelivery.id)) is None

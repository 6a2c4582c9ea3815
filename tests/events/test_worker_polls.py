"""What an idle worker's polls cost: the look that tells a dispatcher whether its cursors
are behind, and the in-process bus with no subscriber, which on PostgreSQL moves past new
events at most once a `BUS_SKIP_INTERVAL_S`."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from billfold.events import repository
from billfold.events.dispatch import ChannelDispatcher
from billfold.events.inbound import store_inbound
from billfold.events.models import EventCursor
from billfold.events.types import EVENT_PARTITIONS
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE, Mode
from billfold.kit.ids import new_id
from billfold.ledger.types import NewAccount
from billfold.worker import BUS_SKIP_INTERVAL_S
from events.events_support import Harness, emit_event, harness, open_accounts, transfer

pytestmark = pytest.mark.anyio


def bus_of(h: Harness) -> ChannelDispatcher:
    return next(d for d in h.worker.dispatchers if d.channel is h.worker.bus)


async def bus_positions(h: Harness) -> set[int]:
    async with h.unit_of_work.read() as session:
        rows = await session.scalars(
            select(EventCursor.position).where(EventCursor.channel == h.worker.bus.name)
        )
        return set(rows)


async def test_the_look_names_the_end_only_when_a_cursor_is_behind(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h:
        uow = h.unit_of_work
        assert await repository.end_if_behind(uow, channel="inprocess") is None
        assert await repository.end_if_behind(uow, channel="no such channel") is None
        await emit_event(h)
        await h.worker.sequence()
        async with uow.read() as session:
            end = await repository.last_seq(session)
        assert await repository.end_if_behind(uow, channel="inprocess") == end
        await h.worker.dispatch()
        assert await repository.end_if_behind(uow, channel="inprocess") is None


async def test_a_bus_with_no_subscriber_moves_past_events_at_most_once_an_interval(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    now = [1000.0]
    monkeypatch.setattr("billfold.worker.time.monotonic", lambda: now[0])
    async with harness(isolated_database_url) as h:
        bus = bus_of(h)
        await emit_event(h)
        await h.worker.sequence()
        assert await h.worker._bus_step(bus) > 0  # the first skip is not held back
        await emit_event(h)
        await h.worker.sequence()
        async with h.unit_of_work.read() as session:
            end = await repository.last_seq(session)
        held_back = await h.worker._bus_step(bus)
        if backend == "postgresql":
            assert held_back == 0 and end not in await bus_positions(h)
            now[0] += BUS_SKIP_INTERVAL_S
            assert await h.worker._bus_step(bus) > 0
        else:  # SQLite writes right away, while it has the work in hand
            assert held_back > 0
        assert await bus_positions(h) == {end}
        await emit_event(h)
        await h.worker.drain()  # drain and run_once are never held back
        async with h.unit_of_work.read() as session:
            assert await bus_positions(h) == {await repository.last_seq(session)}


async def test_workers_starting_together_both_create_their_cursors(
    isolated_database_url: str,
) -> None:
    """The second of two workers preparing at once finds the first one's cursor rows
    uncommitted, not there yet: it waits, then leaves them be instead of failing."""
    async with harness(isolated_database_url) as h:
        first_inserted = asyncio.Event()

        async def second() -> None:
            await first_inserted.wait()
            async with h.unit_of_work.begin() as session:
                await repository.ensure_cursors(
                    session, channel="starting", partitions=EVENT_PARTITIONS, now_ns=2
                )

        racing = asyncio.create_task(second())
        async with h.unit_of_work.begin() as session:
            await repository.ensure_cursors(
                session, channel="starting", partitions=EVENT_PARTITIONS, now_ns=1
            )
            first_inserted.set()
            await asyncio.sleep(0.3)  # the second is now waiting on these rows (PostgreSQL)
        await racing
        async with h.unit_of_work.read() as session:
            rows = (
                await session.scalars(select(EventCursor).where(EventCursor.channel == "starting"))
            ).all()
        assert sorted(row.partition for row in rows) == list(range(EVENT_PARTITIONS))
        assert {row.updated_at for row in rows} == {1}


def wakes(h: Harness) -> set[str]:
    """The loops the lookout has woken (and which have not run since)."""
    worker = h.worker
    woken = {name for name, wake in worker._wake_dispatchers.items() if wake.is_set()}
    if worker._wake_sequencer.is_set():
        woken.add("sequencer")
    if worker._wake_inbound.is_set():
        woken.add("inbound")
    return woken


def clear_wakes(h: Harness) -> None:
    for wake in (*h.worker._wake_dispatchers.values(), h.worker._wake_sequencer):
        wake.clear()
    h.worker._wake_inbound.clear()


async def test_the_lookout_wakes_exactly_the_loops_that_have_work(
    isolated_database_url: str,
) -> None:
    """One look stands for the sequencer's, each dispatcher's and the inbound processor's
    own polls: an idle worker asks once per interval instead of once per loop."""
    async with harness(isolated_database_url) as h:
        await h.worker.drain()
        clear_wakes(h)  # the drain's numbering woke the dispatchers
        await h.worker.look()
        assert wakes(h) == set()  # idle: nothing to wake
        await emit_event(h)
        await h.worker.look()
        assert wakes(h) == {"sequencer"}  # an unnumbered row
        clear_wakes(h)
        await h.worker.sequencer.run_once()  # numbered, without the worker's own wake-ups
        await h.worker.look()
        assert wakes(h) == {"inprocess", "webhooks"}  # every channel is behind now
        clear_wakes(h)
        await h.worker.dispatch()
        await h.worker.look()
        assert wakes(h) == set()
        async with h.unit_of_work.begin() as session:
            await store_inbound(session, source="psp", external_id="evt-look", payload={}, now_ns=1)
        await h.worker.look()
        assert wakes(h) == {"inbound"}


async def test_an_account_opened_after_the_last_transfer_wakes_no_sequencer(
    isolated_database_url: str,
) -> None:
    """The ledger's clock gives accounts timestamps too: compared with the sequencer's
    position, the last one said there was work after every account opened, and every
    idle round locked the sequencer to find nothing."""
    async with harness(isolated_database_url) as h:
        await h.worker.drain()
        tenant = uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{h.tenant_id}:{Mode.TEST.value}")
        await h.ledger.create_accounts(
            [NewAccount(id=new_id(), tenant_id=tenant, ledger="USD", code=1)]
        )
        clear_wakes(h)
        await h.worker.look()
        assert wakes(h) == set()
        assert await h.worker.sequencer.run_once() == 0


async def test_the_lookout_asks_the_ledger_only_for_a_sequencer_that_waits(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """On PostgreSQL a sequencer whose last round found work starts its next one at once:
    the lookout then skips the ledger read that would only wake it (half its cost under
    load). On SQLite the sequencer never says it is busy, and the lookout always asks."""
    async with harness(isolated_database_url) as h:
        await h.worker.drain()
        sequencer = h.worker.sequencer
        asked: list[int] = []
        ask = sequencer.transfers_after

        async def counted(position: int) -> bool:
            asked.append(position)
            return await ask(position)

        monkeypatch.setattr(sequencer, "transfers_after", counted)
        a, b = await open_accounts(h)

        async def look() -> tuple[int, bool]:
            """How many times the lookout asked the ledger; whether it woke the sequencer."""
            clear_wakes(h)
            before = len(asked)
            await h.worker.look()
            return len(asked) - before, "sequencer" in wakes(h)

        await transfer(h, a, b)
        assert await look() == (1, True)  # waiting: asked, and woken
        assert await sequencer.run_once() == 1
        await transfer(h, a, b)
        if backend == "postgresql":  # busy: neither asked nor woken (it goes on unwoken)
            assert (sequencer.busy, await look()) == (True, (0, False))
        else:
            assert (sequencer.busy, await look()) == (False, (1, True))
        assert await sequencer.run_once() == 1
        assert await sequencer.run_once() == 0
        assert (sequencer.busy, await look()) == (False, (1, False))  # waiting, nothing new


async def test_the_look_sees_an_inbound_notification_due_from_its_time_on(
    isolated_database_url: str,
) -> None:
    """The look's statement is built once per set of channels; its time is a parameter."""
    async with harness(isolated_database_url) as h:
        async with h.unit_of_work.begin() as session:
            await store_inbound(session, source="psp", external_id="evt-t", payload={}, now_ns=500)
        for now_ns, due in [(499, False), (500, True), (10**18, True), (1, False)]:
            found = await repository.look(h.unit_of_work, channels=["inprocess"], now_ns=now_ns)
            assert found.inbound_due is due, now_ns

"""The fan-out's handover. A running worker's fan-out on PostgreSQL leases the deliveries
that are first in line as it writes them and hands them to its own sender, which sends
them without its claim and without reading their events again. Order per aggregate must
hold as with the claim, and a lease that is never sent must come back to the claim."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from billfold.events import repository
from billfold.events.dispatch import ChannelDispatcher
from billfold.events.models import WebhookDelivery, WebhookEndpoint
from billfold.events.types import Reads
from billfold.kit.clock import ManualClock
from billfold.worker import HANDOVERS_MAX
from events.events_support import Harness, Receiver, Reply, add_endpoint, emit_event, harness

pytestmark = pytest.mark.anyio

WAIT_S = 20.0
LEASE_NS = 60 * 10**9


def claimed_ids(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The ids every claim of the sender leases, from now on."""
    claimed: list[uuid.UUID] = []
    claim = repository.claim_due_deliveries

    async def recorded(*args: object, **kwargs: object) -> list[repository.DueDelivery]:
        due = await claim(*args, **kwargs)  # type: ignore[arg-type]
        claimed.extend(d.id for d in due)
        return due

    monkeypatch.setattr(repository, "claim_due_deliveries", recorded)
    return claimed


async def until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def fanout_of(h: Harness) -> ChannelDispatcher:
    return next(d for d in h.worker.dispatchers if d.channel is h.worker.fanout)


async def leases(h: Harness) -> dict[uuid.UUID, int | None]:
    """Each delivery's lease, by event."""
    async with h.unit_of_work.read() as session:
        rows = await session.execute(select(WebhookDelivery.event_id, WebhookDelivery.leased_until))
        found: dict[uuid.UUID, int | None] = dict(rows.all())
        return found


async def delivery_ids(h: Harness) -> dict[uuid.UUID, uuid.UUID]:
    """event id -> its (first) delivery's id"""
    async with h.unit_of_work.read() as session:
        rows = await session.execute(select(WebhookDelivery.event_id, WebhookDelivery.id))
        found: dict[uuid.UUID, uuid.UUID] = dict(rows.all())
        return found


async def test_a_running_worker_sends_the_first_in_line_unclaimed_and_keeps_the_order(
    isolated_database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url, events_poll_interval_s=0.05) as h:
            await add_endpoint(h, receiver.url)
            claimed = claimed_ids(monkeypatch)
            alone = [await emit_event(h), await emit_event(h)]
            shared = uuid.uuid4()
            first = await emit_event(h, aggregate=shared, kind="payment.authorized")
            second = await emit_event(h, aggregate=shared, kind="payment.captured")
            h.worker.start(scheduled=False)
            await until(lambda: len(receiver.received) >= 4)
            await h.worker.stop()
            ids = await delivery_ids(h)
    sent = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(sent) == sorted(f"evt_{e.hex}" for e in [*alone, first, second])
    assert sent.index(f"evt_{first.hex}") < sent.index(f"evt_{second.hex}")
    if backend == "postgresql":  # only the one that had to wait its turn was claimed
        assert claimed == [ids[second]]
    else:  # SQLite: no handover, the claim sends everything
        assert set(claimed) == {ids[e] for e in [*alone, first, second]}


async def test_a_pair_with_a_pending_delivery_is_written_unleased(
    isolated_database_url: str,
) -> None:
    """An aggregate whose earlier delivery still waits for a retry: its next delivery is
    not handed over (it would overtake), the other aggregate's is."""
    answers = iter([500])
    with Receiver(lambda _: Reply(status=next(answers, 200))) as receiver:
        async with harness(isolated_database_url) as h:
            await add_endpoint(h, receiver.url)
            aggregate = uuid.uuid4()
            failed = await emit_event(h, aggregate=aggregate, kind="payment.authorized")
            await h.worker.drain()  # attempted once, answered 500: pending, due later
            assert len(receiver.received) == 1
            behind = await emit_event(h, aggregate=aggregate, kind="payment.captured")
            other = await emit_event(h)
            await h.worker.sequence()
            h.worker.fanout.lease_ns = LEASE_NS
            assert await fanout_of(h).run_once() == 2
            leased = h.worker.fanout.take_leased()
            assert [d.event.id for d in leased] == [other]
            assert leased[0].event.data_json is not None  # read with its payload
            found = await leases(h)
            assert found[behind] is None and found[failed] is None
            assert found[other] is not None
            assert h.worker.fanout.take_leased() == []  # handed over once


async def test_a_lease_that_is_never_sent_returns_to_the_claim(
    isolated_database_url: str,
) -> None:
    """A worker that dies between the commit and the send: its leases run out and any
    sender's claim sends them."""
    clock = ManualClock()
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            await add_endpoint(h, receiver.url)
            event = await emit_event(h)
            await h.worker.sequence()
            h.worker.fanout.lease_ns = LEASE_NS
            await fanout_of(h).run_once()
            assert len(h.worker.fanout.take_leased()) == 1  # and dropped: never sent
            h.worker.fanout.lease_ns = None
            assert await h.worker.sender.run_once() == 0  # still leased
            clock.advance(seconds=LEASE_NS // 10**9 + 1)
            assert await h.worker.sender.run_once() == 1
    assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{event.hex}"]


async def test_a_dispatch_sends_what_the_fanout_leased_before_it_returns(
    isolated_database_url: str,
) -> None:
    """`Worker.dispatch` (drain, tests) sends a lease at once: none is left to run out."""
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            await add_endpoint(h, receiver.url)
            event = await emit_event(h)
            await h.worker.sequence()
            h.worker.fanout.lease_ns = LEASE_NS
            await h.worker.dispatch()
            assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{event.hex}"]
            assert h.worker.fanout.take_leased() == []
            async with h.unit_of_work.read() as session:
                status = await session.scalar(select(WebhookDelivery.status))
            assert status == "succeeded"


async def test_an_endpoint_disabled_before_the_send_keeps_its_leased_deliveries(
    isolated_database_url: str,
) -> None:
    """As the claim does not take a disabled endpoint's deliveries, the handover does not
    send them: they stay pending, for when it is enabled again."""
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            endpoint = await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.sequence()
            h.worker.fanout.lease_ns = LEASE_NS
            await fanout_of(h).run_once()
            leased = h.worker.fanout.take_leased()
            async with h.unit_of_work.begin() as session:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == endpoint.id)
                    .values(status="disabled")
                )
            assert await h.worker.sender.send_leased(leased) == 0
            async with h.unit_of_work.read() as session:
                status = await session.scalar(select(WebhookDelivery.status))
    assert receiver.received == [] and status == "pending"


async def test_past_the_handovers_in_flight_the_fanout_writes_unleased(
    isolated_database_url: str, backend: str
) -> None:
    """A slow endpoint must not pile handovers up: with `HANDOVERS_MAX` being sent, the
    next round writes its deliveries for the sender's claim."""
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            await add_endpoint(h, receiver.url)
            worker = h.worker
            worker._started = True  # as `start` sets it, without the loops
            stuck = [asyncio.create_task(asyncio.Event().wait()) for _ in range(HANDOVERS_MAX)]
            worker._handovers.update(stuck)
            try:
                first = await emit_event(h)
                await worker.sequence()
                await worker._dispatch_step(fanout_of(h))
                assert worker.fanout.lease_ns is None
                assert (await leases(h))[first] is None and not worker._handovers - set(stuck)
                for task in stuck:
                    task.cancel()
                await asyncio.gather(*stuck, return_exceptions=True)
                worker._handovers.difference_update(stuck)  # as their callbacks would
                second = await emit_event(h)
                await worker.sequence()
                await worker._dispatch_step(fanout_of(h))
                # Room again: on PostgreSQL this round's delivery is leased and handed over.
                leased = (await leases(h))[second] is not None
                assert leased is (backend == "postgresql")
                await asyncio.gather(*worker._handovers)
            finally:
                worker._started = False
    if backend == "postgresql":
        assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{second.hex}"]


async def test_events_read_without_their_payloads_are_never_handed_over(
    isolated_database_url: str,
) -> None:
    """A handover sends the events it holds: read without payloads (the lease was set after
    the round read), they would go out with empty data. They are written unleased."""
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            await add_endpoint(h, receiver.url)
            event = await emit_event(h)
            await h.worker.sequence()
            async with h.unit_of_work.begin() as session:
                rows = await repository.events_after(
                    session, partitions=list(range(16)), after_seq=0, limit=10, reads=Reads.ROWS
                )
                h.worker.fanout.lease_ns = LEASE_NS
                await h.worker.fanout.record(session, [e for e in rows if e.id == event], 1)
            assert h.worker.fanout.take_leased() == []
            assert (await leases(h))[event] is None
    assert receiver.received == []

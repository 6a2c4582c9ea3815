"""The outbox and the dispatcher: events exist exactly when their change commits, ledger
transfers become typed events, and every channel gets each event in order per aggregate."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.dispatch import run_forever
from billfold.events.ledger_events import transfer_event_id
from billfold.events.outbox import emit
from billfold.events.types import EVENT_PARTITIONS, Event, Reads, cloudevent_json
from billfold.identity.outbox_events import IDENTITY_EVENT_TYPES
from billfold.kit.auth import Mode
from billfold.kit.clock import ManualClock
from billfold.kit.ids import new_id
from billfold.ledger.types import CreateTransferStatus, NewAccount, NewTransfer, TransferFlags
from events.events_support import (
    Harness,
    add_endpoint,
    harness,
    ledger_tenant,
    open_accounts,
    tenant_event_ids,
    transfer,
)

pytestmark = pytest.mark.anyio


async def event_id_of(h: Harness, transfer_id: uuid.UUID) -> uuid.UUID:
    """The id of the event the transfer makes: derived from its id and ledger timestamp."""
    stored = await h.ledger.get_transfer(
        tenant_id=ledger_tenant(h.tenant_id), transfer_id=transfer_id
    )
    return transfer_event_id(transfer_id, stored.timestamp)


def emit_captured(
    session: AsyncSession, h: Harness, payment: uuid.UUID, data: dict[str, Any]
) -> None:
    """A `payment.captured` event of the harness's tenant, in `session`'s transaction."""
    emit(
        session,
        tenant_id=h.tenant_id,
        mode=Mode.TEST,
        type="com.billfold.payment.captured.v1",
        subject=f"pay_{payment.hex}",
        aggregate_id=payment,
        data=data,
    )


async def test_an_emitted_event_exists_only_if_its_transaction_commits(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h:
        received: list[Event] = []

        async def subscriber(event: Event) -> None:
            received.append(event)

        h.worker.bus.subscribe(subscriber)
        kept, dropped = new_id(), new_id()
        async with h.unit_of_work.begin() as session:
            emit_captured(session, h, kept, {"amount": "100", "currency": "USD"})

        async def failing_change() -> None:
            async with h.unit_of_work.begin() as session:
                emit_captured(session, h, dropped, {})
                raise RuntimeError("the change fails")

        with pytest.raises(RuntimeError):
            await failing_change()
        await h.worker.drain()
        assert [e.aggregate_id for e in received] == [kept]
        assert received[0].data == {"amount": "100", "currency": "USD"}
        assert received[0].seq >= 1


async def test_emit_refuses_an_unversioned_type(isolated_database_url: str) -> None:
    async with harness(isolated_database_url) as h, h.unit_of_work.begin() as session:
        with pytest.raises(Exception, match="versioned"):
            emit(
                session,
                tenant_id=h.tenant_id,
                mode=Mode.TEST,
                type="payment.captured",
                subject="pay_x",
                aggregate_id=new_id(),
                data={},
            )


async def test_ledger_transfers_become_typed_events_in_order_per_pending_transfer(
    isolated_database_url: str,
) -> None:
    ledger_clock = ManualClock(start_ns=1_800_000_000 * 10**9)
    async with harness(isolated_database_url, ledger_clock=ledger_clock) as h:
        received: list[Event] = []

        async def subscriber(event: Event) -> None:
            received.append(event)

        h.worker.bus.subscribe(subscriber)
        a, b = await open_accounts(h)
        single = await transfer(h, a, b)
        pending = await transfer(h, a, b, flags=TransferFlags.PENDING)
        post = await transfer(h, a, b, flags=TransferFlags.POST_PENDING, pending_id=pending)
        to_void = await transfer(h, a, b, flags=TransferFlags.PENDING)
        void = await transfer(h, a, b, flags=TransferFlags.VOID_PENDING, pending_id=to_void)
        expiring = await transfer(h, a, b, flags=TransferFlags.PENDING, timeout_s=1)
        ledger_clock.advance(seconds=2)
        [expiry] = await h.ledger.expire_pending()
        await h.worker.drain()
        types = {e.id: (e.type, e.aggregate_id) for e in received}
        short = "com.billfold.transfer."
        assert types[await event_id_of(h, single)] == (short + "posted.v1", single)
        assert types[await event_id_of(h, pending)] == (short + "pending.v1", pending)
        assert types[await event_id_of(h, post)] == (short + "posted.v1", pending)
        assert types[await event_id_of(h, void)] == (short + "voided.v1", to_void)
        expired = transfer_event_id(expiry.id, expiry.timestamp)
        assert types[expired] == (short + "expired.v1", expiring)
        assert len(received) == 7
        seqs = [e.seq for e in received if e.aggregate_id == pending]
        assert seqs == sorted(seqs) and len(seqs) == 2
        single_id = await event_id_of(h, single)
        data = next(e.data for e in received if e.id == single_id)
        assert data["amount"] == "10" and data["id"] == f"txf_{single.hex}"
        assert data["debit_account_id"] == f"acc_{a.hex}"
        assert await tenant_event_ids(h.unit_of_work, h.tenant_id) == [e.id for e in received]


async def test_transfers_of_a_ledger_tenant_without_identity_tenant_make_no_event(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h:
        stranger = uuid.uuid4()
        ids = [new_id(), new_id()]
        await h.ledger.create_accounts(
            [NewAccount(id=i, tenant_id=stranger, ledger="USD", code=1) for i in ids]
        )
        [result] = await h.ledger.create_transfers(
            [
                NewTransfer(
                    id=new_id(),
                    tenant_id=stranger,
                    debit_account_id=ids[0],
                    credit_account_id=ids[1],
                    amount=1,
                    ledger="USD",
                    code=1,
                )
            ]
        )
        assert result.status is CreateTransferStatus.OK
        a, b = await open_accounts(h)
        mine = await transfer(h, a, b)
        await h.worker.drain()
        assert await tenant_event_ids(h.unit_of_work, h.tenant_id) == [await event_id_of(h, mine)]


async def test_a_failing_subscriber_gets_the_batch_again_with_the_same_ids(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h:
        seen: list[uuid.UUID] = []
        failures = [True]

        async def flaky(event: Event) -> None:
            seen.append(event.id)
            if failures:
                failures.clear()
                raise ConnectionError("subscriber down")

        h.worker.bus.subscribe(flaky)
        a, b = await open_accounts(h)
        first = await transfer(h, a, b)
        await h.worker.sequence()
        with pytest.raises(ConnectionError):
            await h.worker.dispatchers[0].run_once()
        await h.worker.drain()
        assert seen == [await event_id_of(h, first)] * 2


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_several_workers_deliver_each_event_once_in_order_per_aggregate(
    isolated_database_url: str,
) -> None:
    async with (
        harness(
            isolated_database_url, events_partitions_per_claim=4, events_batch_size_max=50
        ) as one,
        harness(
            isolated_database_url, events_partitions_per_claim=4, events_batch_size_max=50
        ) as two,
    ):
        delivered: list[tuple[str, Event]] = []
        for name, h in (("one", one), ("two", two)):

            async def record(event: Event, name: str = name) -> None:
                if event.type in IDENTITY_EVENT_TYPES:
                    return  # the bootstraps' API key events (a harness's drain over 4 of
                    # 16 partitions may stop before every partition is past them)
                delivered.append((name, event))
                await asyncio.sleep(0)  # let the other worker interleave

            h.worker.bus.subscribe(record)
        aggregates = [new_id() for _ in range(20)]
        for round_number in range(10):
            async with one.unit_of_work.begin() as session:
                for aggregate in aggregates:
                    emit(
                        session,
                        tenant_id=one.tenant_id,
                        mode=Mode.TEST,
                        type="com.billfold.payment.updated.v1",
                        subject=f"pay_{aggregate.hex}",
                        aggregate_id=aggregate,
                        data={"round": round_number},
                    )
        while await one.worker.sequence():
            pass

        async def drain(h: Harness) -> None:
            # A round may claim nothing while the other worker holds every free partition.
            for _ in range(500):
                if len(delivered) >= 200:
                    return
                if not await h.worker.dispatchers[0].run_once():
                    await asyncio.sleep(0.01)

        await asyncio.gather(drain(one), drain(two), drain(one), drain(two))
        await asyncio.gather(drain(one), drain(two))  # nothing may be left to send twice
        mine = [(n, e) for n, e in delivered if e.tenant_id == one.tenant_id]
        assert len(mine) == 200
        assert len({e.id for _, e in mine}) == 200
        assert {n for n, _ in mine} == {"one", "two"}
        for aggregate in aggregates:
            rounds = [e.data["round"] for _, e in mine if e.aggregate_id == aggregate]
            assert rounds == list(range(10))


async def test_with_no_subscriber_the_bus_moves_past_events_and_a_later_one_sees_new_ones(
    isolated_database_url: str,
) -> None:
    """Without a subscriber the in-process channel reads nothing: its cursors jump to the
    end of the log. A subscriber added afterwards gets the events that follow."""
    async with harness(isolated_database_url) as h:
        debit, credit = await open_accounts(h)
        before = [await transfer(h, debit, credit) for _ in range(3)]
        await h.worker.drain()
        bus = next(d for d in h.worker.dispatchers if d.channel is h.worker.bus)
        async with h.unit_of_work.read() as session:
            last = await repository.last_seq(session)
            cursors = await repository.claim_cursors(
                session, channel="inprocess", limit=EVENT_PARTITIONS, offset=0, lock=False
            )
        assert last > 0 and {c.position for c in cursors} == {last}
        assert await bus.run_once() == 0  # nothing behind: no write
        received: list[Event] = []

        async def subscriber(event: Event) -> None:
            received.append(event)

        h.worker.bus.subscribe(subscriber)
        after = await transfer(h, debit, credit)
        await h.worker.drain()
        assert [e.id for e in received] == [await event_id_of(h, after)]
        assert await event_id_of(h, before[0]) not in {e.id for e in received}


async def test_only_a_channel_that_selects_tenants_reads_the_end_of_the_log(
    isolated_database_url: str,
) -> None:
    """The fan-out (webhooks) reads the end of the log, then the tenants with an endpoint,
    and moves its cursors to that end; a channel that takes every tenant's events (the bus
    with a subscriber, as NATS) moves them to the last event it read and needs neither. It
    used to read the end at every round all the same."""
    statements: list[str] = []

    def seen(_c: object, _k: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()).lower())

    async with harness(isolated_database_url) as h:
        received: list[Event] = []

        async def subscriber(event: Event) -> None:
            received.append(event)

        h.worker.bus.subscribe(subscriber)
        await add_endpoint(h, "http://127.0.0.1:9/hooks")
        debit, credit = await open_accounts(h)
        made = await transfer(h, debit, credit)
        await h.worker.sequence()
        bus, fanout = (
            next(d for d in h.worker.dispatchers if d.channel is channel)
            for channel in (h.worker.bus, h.worker.fanout)
        )
        reads_of_the_end = []
        for dispatcher in (bus, fanout):
            statements.clear()
            sqlalchemy_event.listen(Engine, "before_cursor_execute", seen)
            try:
                assert await dispatcher.run_once() == 1
            finally:
                sqlalchemy_event.remove(Engine, "before_cursor_execute", seen)
            reads_of_the_end.append(sum("max(events_outbox.seq)" in s for s in statements))
        assert reads_of_the_end == [0, 1]
        assert [e.id for e in received] == [await event_id_of(h, made)]
        async with h.unit_of_work.read() as session:
            last = await repository.last_seq(session)
            for channel in ("inprocess", "webhooks"):
                cursors = await repository.claim_cursors(
                    session, channel=channel, limit=EVENT_PARTITIONS, offset=0, lock=False
                )
                assert {c.position for c in cursors} == {last}


async def test_raw_reads_carry_the_stored_payload_text(isolated_database_url: str) -> None:
    """`Reads.RAW` hands the payload over as the stored JSON text (NATS and webhooks splice
    it into the envelope): it decodes to the payload, and the envelope is the same."""
    async with harness(isolated_database_url) as h:
        identifier = new_id()
        data = {"amount": "100", "note": 'a "quoted" café\n', "nested": {"list": [1, None]}}
        async with h.unit_of_work.begin() as session:
            emit_captured(session, h, identifier, data)
        await h.worker.sequence()
        async with h.unit_of_work.read() as session:
            options = {"partitions": range(EVENT_PARTITIONS), "after_seq": 0, "limit": 1000}
            [raw] = [
                e
                for e in await repository.events_after(session, reads=Reads.RAW, **options)  # type: ignore[arg-type]
                if e.aggregate_id == identifier
            ]
            [decoded] = [
                e
                for e in await repository.events_after(session, reads=Reads.DATA, **options)  # type: ignore[arg-type]
                if e.aggregate_id == identifier
            ]
            by_id = await repository.events_by_id(session, [raw.id], raw=True)
        assert raw.data == {} and raw.data_json is not None
        assert json.loads(raw.data_json) == data == decoded.data
        assert by_id[raw.id].data_json == raw.data_json
        assert json.loads(cloudevent_json(raw)) == json.loads(cloudevent_json(decoded))


async def test_a_stopping_loop_finishes_its_step_instead_of_being_cancelled() -> None:
    """A stop lets the step in progress end (its transaction commits or rolls back by
    itself) and then the loop returns; an idle loop returns as soon as it is woken."""
    stopping, wake, inside, release = (asyncio.Event() for _ in range(4))
    finished: list[str] = []

    async def step() -> int:
        inside.set()
        await release.wait()
        finished.append("step")
        return 1

    busy = asyncio.create_task(run_forever("busy", step, idle_s=60, wake=wake, stopping=stopping))
    await inside.wait()
    stopping.set()
    wake.set()
    await asyncio.sleep(0.05)
    assert not busy.done()  # still in its step: not interrupted
    release.set()
    await asyncio.wait_for(busy, 5)
    assert finished == ["step"]

    idle_wake = asyncio.Event()
    idle_stopping = asyncio.Event()

    async def nothing() -> int:
        return 0

    idle = asyncio.create_task(
        run_forever("idle", nothing, idle_s=60, wake=idle_wake, stopping=idle_stopping)
    )
    await asyncio.sleep(0.05)
    idle_stopping.set()
    idle_wake.set()
    await asyncio.wait_for(idle, 5)


async def test_idle_rounds_open_no_writing_transaction(database_url: str) -> None:
    """With nothing new, the sequencer and every channel look without locks and stop: no
    writing transaction (on PostgreSQL, no row lock, transaction id or WAL flush)."""
    async with harness(database_url) as h:
        debit, credit = await open_accounts(h)
        await transfer(h, debit, credit)
        await h.worker.drain()
        writes = 0
        begin = h.unit_of_work.begin

        def counting_begin() -> Any:
            nonlocal writes
            writes += 1
            return begin()

        h.unit_of_work.begin = counting_begin  # type: ignore[method-assign]
        assert await h.worker.sequence() == 0
        for dispatcher in h.worker.dispatchers:
            assert await dispatcher.run_once() == 0
        assert writes == 0
        await transfer(h, debit, credit)  # and with something new, they do write
        assert await h.worker.sequence() == 1
        assert writes == 1


async def test_a_wake_up_during_a_step_is_not_lost() -> None:
    """Work committed while a round runs (the wake-up set meanwhile) is picked up at once,
    not after the idle wait: the event is cleared before the step, not after it."""
    wake, stopping = asyncio.Event(), asyncio.Event()
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            wake.set()  # another loop committed new work while this round looked
        return 0

    loop = asyncio.create_task(run_forever("woken", step, idle_s=60, wake=wake, stopping=stopping))
    await asyncio.sleep(0.1)
    assert calls >= 2
    stopping.set()
    wake.set()
    await asyncio.wait_for(loop, 5)

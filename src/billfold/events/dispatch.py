"""The outbox dispatcher: the sequencer, then one cursor-driven loop per channel.

**Sequencer.** Numbers committed outbox rows (`seq`) and copies new ledger transfers in as
events, in one transaction under its cursor row's lock, so `seq` grows in commit order and
the numbered log is always a prefix with no holes.

**Channels.** Each channel (in-process subscribers, NATS JetStream, webhook fan-out) keeps
one cursor per partition (`hash(aggregate) % 16`). A worker claims free partitions (`FOR
UPDATE SKIP LOCKED` on PostgreSQL), reads their events after the cursor in `seq` order,
delivers them, then moves the cursors. While it holds a partition no other worker delivers
it, so one aggregate's events reach every channel in order, and no event goes twice to a
channel from two workers at once.

**At least once.** A worker that dies after delivering and before moving its cursor leaves
the cursor where it was: the next one delivers those events again, with the same ids. That
is the only duplicate; NATS drops it within its duplicate window (`Nats-Msg-Id`) and
consumers drop it by event id. The webhook fan-out writes its deliveries in the cursor's
transaction, so it happens exactly once.

On SQLite one worker runs (the embedded default): the database has one writer anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.ledger_events import (
    EVENT_RECORD_COLUMNS,
    TRANSFER_EVENT_SOURCES_PG,
    TenantModes,
    transfer_event_records,
    transfer_event_row,
)
from billfold.events.models import EventCursor
from billfold.events.types import EVENT_PARTITIONS, Event, Reads
from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import Transfer

__all__ = [
    "Channel",
    "ChannelDispatcher",
    "InProcessBus",
    "Sequencer",
    "Subscriber",
]

log = structlog.get_logger(__name__)

Subscriber = Callable[[Event], Awaitable[None]]


class Channel(Protocol):
    """A destination of events. `deliver` does the outside effect (publish, call
    subscribers); `record` writes what the channel keeps in the database, in the same
    transaction as the cursor that moves past the events."""

    name: str

    @property
    def reads(self) -> Reads:
        """What the dispatcher reads of each event for this channel now. With
        `Reads.ROWS`, `deliver` is not called (there is no payload to deliver); with
        `Reads.NOTHING`, neither `deliver` nor `record`: the cursors move past the events."""
        ...

    selects_tenants: bool
    """Whether `tenants` may leave some tenants out. A channel that wants every tenant's
    events says no, and the dispatcher then reads neither `tenants` nor the end of the log
    for it."""

    async def tenants(self, session: AsyncSession) -> Collection[uuid.UUID] | None:
        """The tenants whose events the channel wants now, read in the dispatcher's
        transaction after the end of the log; None: every tenant's. Other tenants' events
        are passed over unread (their cursors move past them all the same)."""
        ...

    async def deliver(self, events: Sequence[Event]) -> None: ...

    async def record(self, session: AsyncSession, events: Sequence[Event], now_ns: int) -> None: ...


class InProcessBus:
    """In-process subscribers: the embedded default channel. A subscriber that raises makes
    the batch be delivered again (to every subscriber: they must be idempotent by id)."""

    name = "inprocess"
    selects_tenants = False

    def __init__(self, *, subscribers_max: int = 64) -> None:
        self._subscribers: list[Subscriber] = []
        self._subscribers_max = subscribers_max

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add `subscriber`; returns a function that removes it."""
        invariant(len(self._subscribers) < self._subscribers_max, "subscribers are bounded")
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    @property
    def reads(self) -> Reads:
        """No subscriber, nothing to hand over: the cursor moves past the events unread."""
        return Reads.DATA if self._subscribers else Reads.NOTHING

    async def tenants(self, session: AsyncSession) -> None:
        return None

    async def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            for subscriber in list(self._subscribers):
                await subscriber(event)

    async def record(self, session: AsyncSession, events: Sequence[Event], now_ns: int) -> None:
        return None


class Sequencer:
    """Numbers the outbox and copies the ledger's new transfers into it."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        ledger: Ledger,
        *,
        clock: Clock,
        batch_size_max: int,
        row_locks: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._ledger = ledger
        self._clock = clock
        self._batch_size_max = batch_size_max
        self._row_locks = row_locks
        self._monotonic = monotonic
        """What measures the standby (seconds; tests move their own)."""
        self._idle = True
        """Whether the last round found nothing to do (PostgreSQL: look before locking)."""
        self._tenants = TenantModes()
        self._ahead: _ReadAhead | None = None
        """PostgreSQL: the transfers after the last round's end, read while that round
        wrote and committed (`_run_locked`)."""
        self.reads_ahead_used = 0
        """Rounds that copied a batch read ahead instead of reading their own."""
        self.standby_s = 0.0
        """PostgreSQL: once it found the sequencer held by another worker, how long this one
        leaves it to that one before it looks again (`_take_over`); 0: it tries at its next
        round. The worker's loops set it; `drain` leaves it at 0."""
        self._standby_until = 0.0
        """The `monotonic` time until which it stands by."""
        self._standby_position: int | None = None
        """The sequencer's position when this worker last looked while standing by; None:
        not standing by."""

    async def prepare(self) -> None:
        async with self._unit_of_work.begin() as session:
            await repository.ensure_cursors(
                session, channel=repository.SEQUENCER, partitions=1, now_ns=self._clock.now_ns()
            )

    async def run_once(self) -> int:
        """One round; the number of events it numbered (0: nothing new, or another worker
        holds the sequencer).

        The ledger is read before the sequencer's transaction opens, and the copy is kept
        only if the cursor has not moved meanwhile: on SQLite the ledger's reads share one
        thread with its writer, which may be waiting for the write lock this transaction
        would hold. The writing transaction opens only when there is something to number
        or copy. On PostgreSQL (`row_locks`) the cursor is locked first instead, and the
        transfers are read in the same transaction with their payloads written by
        PostgreSQL, or were read ahead by the round before (`_run_locked`): a worker that
        does not hold the sequencer then reads nothing (it used to read and decode up to a
        batch of transfers each round, only to find the lock taken or the cursor moved)."""
        if self._row_locks:
            return await self._run_locked()
        async with self._unit_of_work.read() as session:  # no write lock while idle
            position = await repository.sequencer_position(session)
            unsequenced = await repository.has_unsequenced(session)
        transfers = await self._ledger.transfers_after(
            after_timestamp=position, limit=self._batch_size_max
        )
        if not transfers and not unsequenced:
            return 0
        async with self._unit_of_work.begin() as session:
            cursor = await repository.lock_sequencer(session)
            if cursor is None:
                return 0
            unchanged = cursor.position == position
            return await self._number_and_copy(session, cursor, transfers if unchanged else [])

    async def _run_locked(self) -> int:
        """After an empty round, look without locks first (no row lock, no transaction
        id, no commit to flush while idle); while rounds find work, lock at once.

        **Read-ahead.** Only one worker at a time runs this loop, so under load its round is
        the log's bottleneck: read the transfers, write them to the outbox, commit. Once a
        round has read its batch, it reads the next one (the transfers after the batch's
        last timestamp) on a connection of its own while it writes and commits, and the
        next round copies that batch instead of reading, if the cursor it locks is where
        the batch starts (else, another worker moved it or this round's commit failed,
        the batch is dropped). Read outside the lock, the batch is still exactly the
        transfers after its start that had committed when it was read: timestamps grow in
        commit order, so later commits come after all of them."""
        if self._standby_position is not None and not await self._take_over():
            return 0
        ahead, self._ahead = self._ahead, None
        if self._idle and ahead is None:
            async with self._unit_of_work.read() as session:
                position = await repository.sequencer_position(session)
                unsequenced = await repository.has_unsequenced(session)
            if not unsequenced and not await self.transfers_after(position):
                return 0
        reading: asyncio.Task[_ReadAhead | None] | None = None
        try:
            async with self._unit_of_work.begin() as session:
                cursor = await repository.lock_sequencer(session)
                if cursor is None:
                    self._idle = True
                    if self.standby_s > 0:
                        self._stand_by(await repository.sequencer_position(session))
                    return 0
                numbered, last_seq = await self._number(session)
                if ahead is not None and ahead.after == cursor.position:
                    sources = ahead.sources
                    self.reads_ahead_used += 1
                else:
                    sources = await self._read_transfers(session, cursor.position)
                if sources:
                    reading = asyncio.create_task(self._read_ahead(sources[-1][4]))
                copied = await self._copy_from_ledger(session, cursor, sources, last_seq)
            if reading is not None:
                self._ahead = await reading
        finally:
            if reading is not None and not reading.done():  # the round failed: not wanted
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
        done = numbered + copied
        self._idle = not done
        return done

    async def _read_transfers(self, session: AsyncSession, position: int) -> list[Any]:
        """PostgreSQL: the ledger's next transfers after `position` with their payloads
        written by PostgreSQL (`TRANSFER_EVENT_SOURCES_PG`), at most a batch."""
        await repository.plan_with_indexes(session)  # the ledger's read walks its index
        return await repository.fetch_pg(
            session, TRANSFER_EVENT_SOURCES_PG, position, self._batch_size_max
        )

    async def _read_ahead(self, after: int) -> _ReadAhead | None:
        """The next batch, read in a read-only transaction of its own; None if there was
        none yet, or if the read failed (the next round then reads for itself)."""
        try:
            async with self._unit_of_work.read() as session:
                sources = await self._read_transfers(session, after)
        except Exception:
            log.warning("events.sequencer_read_ahead_failed", exc_info=True)
            return None
        return _ReadAhead(after, sources) if sources else None

    async def _number(self, session: AsyncSession) -> tuple[int, int]:
        """Number the committed rows still without a `seq` (up to a batch): how many, and
        the last `seq` given out."""
        seq = await repository.last_seq(session)
        numbered = await repository.number_unsequenced(
            session, last_seq=seq, limit=self._batch_size_max
        )
        return numbered, seq + numbered

    async def _copy_from_ledger(
        self, session: AsyncSession, cursor: EventCursor, sources: Sequence[Any], last_seq: int
    ) -> int:
        """PostgreSQL: copy `sources`, the ledger's next transfers after the (locked) cursor
        (rows of `TRANSFER_EVENT_SOURCES_PG`), into the outbox from `last_seq + 1` on, and
        move the cursor past them; how many events it copied."""
        if not sources:
            return 0
        owners = await self._tenants.resolve(session, {source[1] for source in sources})
        records = transfer_event_records(sources, owners, last_seq=last_seq)
        await repository.copy_event_records(session, EVENT_RECORD_COLUMNS, records)
        cursor.position = sources[-1][4]
        cursor.updated_at = self._clock.now_ns()
        return len(records)

    def _stand_by(self, position: int) -> None:
        self._standby_position = position
        self._standby_until = self._monotonic() + self.standby_s

    async def _take_over(self) -> bool:
        """Standing by: whether to try for the sequencer again. Not for `standby_s`, and
        not while its holder still moves it (looked at without locks, so no clocks are
        compared): a holder at work keeps it, and another worker takes over within twice
        `standby_s` once it stops. Workers that tried at every round took turns, because
        the moment between one round's commit and the next one's lock was enough for
        another to take it; each round then ran in a worker that had not read its batch
        ahead (`_run_locked`)."""
        if self.standing_by:
            return False
        async with self._unit_of_work.read() as session:
            position = await repository.sequencer_position(session)
        if position != self._standby_position:
            self._stand_by(position)
            return False
        self._standby_position = None
        return True

    @property
    def standing_by(self) -> bool:
        """Whether this worker leaves the sequencer to another for now."""
        return self._monotonic() < self._standby_until

    @property
    def busy(self) -> bool:
        """Whether its last round found work (on PostgreSQL; on SQLite, never said): it
        then starts its next round at once, without waiting to be woken."""
        return not self._idle

    async def transfers_after(self, position: int) -> bool:
        """Whether the ledger has a transfer after `position`: the sequencer's own
        question. (The ledger's last timestamp is no answer: an account takes one too, and
        after an account opened, every idle round would have locked to find nothing.)"""
        return bool(await self._ledger.transfers_after(after_timestamp=position, limit=1))

    async def _number_and_copy(
        self, session: AsyncSession, cursor: EventCursor, transfers: Sequence[Transfer]
    ) -> int:
        """Number the committed rows still without a `seq`, then copy `transfers` in after
        them and move the (locked) cursor past them; how many events were numbered."""
        numbered, last_seq = await self._number(session)
        if not transfers:
            return numbered
        rows = await self._transfer_rows(session, transfers, last_seq)
        await repository.insert_events(session, rows)
        cursor.position = transfers[-1].timestamp
        cursor.updated_at = self._clock.now_ns()
        return numbered + len(rows)

    async def _transfer_rows(
        self, session: AsyncSession, transfers: Sequence[Transfer], last_seq: int
    ) -> list[dict[str, Any]]:
        owners = await self._tenants.resolve(session, {t.tenant_id for t in transfers})
        rows = []
        for transfer in transfers:
            owner = owners.get(transfer.tenant_id)
            if owner is not None:
                last_seq += 1
                rows.append(
                    transfer_event_row(
                        transfer, tenant_id=owner.tenant_id, mode=owner.mode, seq=last_seq
                    )
                )
        return rows


@dataclass(frozen=True, slots=True)
class _ReadAhead:
    """The ledger's transfers after `after` (rows of `TRANSFER_EVENT_SOURCES_PG`), read
    before the round that copies them."""

    after: int
    sources: list[Any]


class ChannelDispatcher:
    """Delivers the log to one channel, a batch of claimed partitions at a time."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        channel: Channel,
        *,
        clock: Clock,
        batch_size_max: int,
        partitions_per_claim: int,
        row_locks: bool,
    ) -> None:
        invariant(1 <= partitions_per_claim <= EVENT_PARTITIONS, "claims are bounded")
        self._unit_of_work = unit_of_work
        self.channel = channel
        self._clock = clock
        self._batch_size_max = batch_size_max
        self._partitions_per_claim = partitions_per_claim
        self._row_locks = row_locks
        self._pending: list[Event] = []
        self._reads = Reads.DATA
        self._idle = True
        """Whether the last round found nothing to deliver (PostgreSQL: look first)."""

    async def prepare(self) -> None:
        async with self._unit_of_work.begin() as session:
            await repository.ensure_cursors(
                session,
                channel=self.channel.name,
                partitions=EVENT_PARTITIONS,
                now_ns=self._clock.now_ns(),
            )

    async def run_once(self) -> int:
        """Deliver one batch; the number of events read (some may have been delivered
        already by an earlier claim of their partition, and are skipped)."""
        if self.channel.reads is Reads.NOTHING:
            return await self._skip()
        if self._row_locks:
            # After an empty round, look without locks first: an idle round then takes no
            # row lock, so it needs no transaction id nor a commit flushed to the WAL.
            if self._idle and await self._end_if_behind() is None:
                return 0
            async with self._unit_of_work.begin() as session:
                claimed, scanned, through = await self._read(session)
                self._idle = not scanned
                if not scanned:
                    self._move(claimed, through)
                    return 0
                await self._deliver(claimed, scanned)
                await self._advance(session, claimed, scanned, through)
            return len(scanned)
        # SQLite: a writing transaction takes the database's only write lock, so the log is
        # read without it and the outside delivery happens before one short write (one
        # worker runs on SQLite); an idle poll never takes the lock.
        async with self._unit_of_work.read() as session:
            claimed, scanned, through = await self._read(session)
            positions = {cursor.partition: cursor.position for cursor in claimed}
        if not any(cursor.position < through for cursor in claimed):
            return 0
        await self._deliver(claimed, scanned)
        async with self._unit_of_work.begin() as session:
            current = await repository.claim_cursors(
                session, channel=self.channel.name, limit=EVENT_PARTITIONS, offset=0, lock=False
            )
            still = [c for c in current if positions.get(c.partition) == c.position]
            await self._advance(session, still, scanned, through)
        return len(scanned)

    async def _end_if_behind(self) -> int | None:
        """The end of the log (its last `seq`) if any of the channel's cursors is behind
        it, else None; looked at without locks."""
        return await repository.end_if_behind(self._unit_of_work, channel=self.channel.name)

    async def _skip(self) -> int:
        """Move the channel's cursors to the end of the log without reading it; how many
        positions the furthest-behind one moved (0: none was behind)."""
        last = await self._end_if_behind()
        if last is None:
            return 0
        async with self._unit_of_work.begin() as session:
            claimed = await repository.claim_cursors(
                session,
                channel=self.channel.name,
                limit=EVENT_PARTITIONS,
                offset=0,
                lock=self._row_locks,
            )
            now_ns = self._clock.now_ns()
            moved = 0
            for cursor in claimed:
                if cursor.position < last:
                    moved = max(moved, last - cursor.position)
                    cursor.position = last
                    cursor.updated_at = now_ns
        return moved

    async def _read(self, session: AsyncSession) -> tuple[list[EventCursor], list[Event], int]:
        """Claim cursors and read their partitions' next events: the cursors, the events
        the channel wants, and the `seq` the cursors may move to (0 when nothing was
        claimed). A channel that wants only some tenants' events (`Channel.tenants`) has
        the others passed over unread: when fewer than a batch of its own come back, it has
        seen every event up to the end of the log as read before its tenants were, so its
        cursors move there. That order matters: a tenant given its first endpoint after the
        end was read has its later events read; its earlier ones were passed over before
        the endpoint existed, as a fan-out that ran a moment sooner would have done. A
        channel that wants every tenant's (not `selects_tenants`) moves its cursors to the
        last event read, and the end of the log is not read for it (one statement a round
        that NATS and the in-process bus did not need)."""
        await repository.plan_with_indexes(session)
        claimed = await repository.claim_cursors(
            session,
            channel=self.channel.name,
            limit=self._partitions_per_claim,
            offset=random.randrange(EVENT_PARTITIONS),
            lock=self._row_locks,
        )
        if not claimed:
            return [], [], 0
        low = min(cursor.position for cursor in claimed)
        self._reads = self.channel.reads
        tenants: Collection[uuid.UUID] | None = None
        end = low  # read below only where it is used
        if self.channel.selects_tenants:
            end = await repository.last_seq(session)
            tenants = await self.channel.tenants(session)
            if tenants is not None and not tenants:
                return claimed, [], end
        scanned = await repository.events_after(
            session,
            partitions=[cursor.partition for cursor in claimed],
            after_seq=low,
            limit=self._batch_size_max,
            reads=self._reads,
            tenants=tenants,
        )
        if tenants is None or len(scanned) == self._batch_size_max:
            return claimed, scanned, scanned[-1].seq if scanned else low
        # Events numbered since the end was read may have come back too.
        return claimed, scanned, max(end, scanned[-1].seq) if scanned else end

    async def _deliver(self, claimed: Sequence[EventCursor], scanned: Sequence[Event]) -> None:
        positions = {cursor.partition: cursor.position for cursor in claimed}
        self._pending = [e for e in scanned if e.seq > positions[e.partition]]
        if self._pending and self._reads is not Reads.ROWS:
            await self.channel.deliver(self._pending)

    async def _advance(
        self,
        session: AsyncSession,
        claimed: Sequence[EventCursor],
        scanned: Sequence[Event],
        through: int,
    ) -> None:
        """Every claimed partition has now seen all its events up to `through` (the
        numbered log has no holes), so each cursor moves there."""
        if self._pending:
            await self.channel.record(session, self._pending, self._clock.now_ns())
        self._move(claimed, through)

    def _move(self, claimed: Sequence[EventCursor], through: int) -> None:
        now_ns = self._clock.now_ns()
        for cursor in claimed:
            if cursor.position < through:
                cursor.position = through
                cursor.updated_at = now_ns


async def run_forever(
    name: str,
    step: Callable[[], Awaitable[int]],
    *,
    idle_s: float,
    wake: asyncio.Event,
    stopping: asyncio.Event | None = None,
) -> None:
    """Call `step` again at once while it finds work; otherwise wait `idle_s` or until
    `wake` is set. An error is logged and retried after the wait: a crash would stop
    delivery. Once `stopping` is set the loop returns after the step it is in, so a stop
    never interrupts a transaction (whoever sets it sets `wake` too, to end the wait)."""
    while stopping is None or not stopping.is_set():
        # Cleared before the step, not after: a wake-up that comes while the step runs
        # (new work committed meanwhile) ends the wait below at once instead of being lost.
        wake.clear()
        try:
            done = await step()
        except Exception:
            log.exception("events.step_failed", loop=name)
            done = 0
        if done:
            await asyncio.sleep(0)  # let the other loops in
            continue
        if stopping is not None and stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), idle_s)

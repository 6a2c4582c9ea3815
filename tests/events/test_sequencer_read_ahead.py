"""The sequencer's read-ahead (PostgreSQL): while a round writes its batch to the outbox and
commits, it reads the next batch on a connection of its own, and the next round copies that
batch if the cursor it locks is where the batch starts. Whatever happens in between, every
transfer becomes exactly one event, in the ledger's order, numbered without holes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from billfold.events import repository
from billfold.events.dispatch import Sequencer
from billfold.events.ledger_events import transfer_event_id
from billfold.events.models import OutboxEvent
from billfold.kit.clock import SystemClock
from events.events_support import Harness, harness
from events.test_dispatch import open_accounts, transfer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres_only,
    pytest.mark.parametrize("backend", ["postgresql"]),
]

BATCH = 3


async def transfers(h: Harness, count: int) -> list[uuid.UUID]:
    a, b = await open_accounts(h)
    return [await transfer(h, a, b) for _ in range(count)]


async def assert_copied_once_in_order(h: Harness, transfer_ids: list[uuid.UUID]) -> None:
    """Each transfer's one event, in the ledger's order, and the log numbered 1..n."""
    stored = {t.id: t for t in await h.ledger.transfers_after(after_timestamp=0, limit=100)}
    expected = [transfer_event_id(i, stored[i].timestamp) for i in transfer_ids]
    async with h.unit_of_work.read() as session:
        rows = (await session.execute(select(OutboxEvent.id, OutboxEvent.seq))).all()
    by_seq = sorted(rows, key=lambda row: row.seq)
    assert [row.seq for row in by_seq] == list(range(1, len(rows) + 1))
    copied = [row.id for row in by_seq if row.id in set(expected)]
    assert copied == expected


@pytest.fixture
async def h(isolated_database_url: str) -> AsyncIterator[Harness]:
    """A worker whose sequencer copies at most `BATCH` transfers a round."""
    async with harness(isolated_database_url, events_batch_size_max=BATCH) as opened:
        yield opened


async def rounds_until_idle(sequencer: Sequencer) -> int:
    rounds = 0
    while await sequencer.run_once():
        rounds += 1
    return rounds


async def test_rounds_after_the_first_copy_the_batch_read_ahead(h: Harness) -> None:
    ids = await transfers(h, 10)
    sequencer = h.worker.sequencer
    assert await rounds_until_idle(sequencer) == 4  # 3 + 3 + 3 + 1
    assert sequencer.reads_ahead_used == 3
    await assert_copied_once_in_order(h, ids)


async def test_transfers_committed_after_the_read_ahead_come_in_a_later_round(h: Harness) -> None:
    first = await transfers(h, 5)
    sequencer = h.worker.sequencer
    assert await sequencer.run_once() == 3  # reads 4 and 5 ahead
    later = await transfers(h, 2)
    assert await sequencer.run_once() == 2  # 4 and 5, as read ahead
    assert sequencer.reads_ahead_used == 1
    assert await rounds_until_idle(sequencer) == 1  # the later two
    await assert_copied_once_in_order(h, first + later)


async def test_a_batch_read_ahead_is_dropped_when_another_worker_moved_the_cursor(
    h: Harness,
) -> None:
    ids = await transfers(h, 8)
    mine = h.worker.sequencer
    other = Sequencer(
        h.unit_of_work, h.ledger, clock=SystemClock(), batch_size_max=BATCH, row_locks=True
    )
    assert await mine.run_once() == 3  # and reads 4..6 ahead
    assert await other.run_once() == 3  # copies 4..6 itself, moving the cursor
    assert await mine.run_once() == 2  # not 4..6 again: 7 and 8
    assert mine.reads_ahead_used == 0
    assert await rounds_until_idle(mine) + await rounds_until_idle(other) == 0
    await assert_copied_once_in_order(h, ids)


async def test_a_round_that_fails_after_reading_ahead_leaves_nothing_behind(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await transfers(h, 7)
    sequencer = h.worker.sequencer
    assert await sequencer.run_once() == 3  # reads 4..6 ahead
    copy = repository.copy_event_records

    async def failing(*arguments: Any) -> None:
        raise ConnectionError("the outbox is unreachable")

    monkeypatch.setattr(repository, "copy_event_records", failing)
    with pytest.raises(ConnectionError):
        await sequencer.run_once()  # took the batch read ahead, read 7 ahead, failed
    monkeypatch.setattr(repository, "copy_event_records", copy)
    # The failed round's commit never happened: what it read ahead is not used.
    assert await sequencer.run_once() == 3
    assert sequencer.reads_ahead_used == 1  # the failed round's
    assert await rounds_until_idle(sequencer) == 1
    await assert_copied_once_in_order(h, ids)

"""The sequencer's read-ahead (PostgreSQL): while a round writes its batch to the outbox and
commits, it reads the next batch on a connection of its own, and the next round copies that
batch if the cursor it locks is where the batch starts. Whatever happens in between, every
transfer becomes exactly one event, in the ledger's order, numbered without holes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from billfold.events import repository
from billfold.events.dispatch import Sequencer
from billfold.kit.clock import SystemClock
from events.events_support import Harness, harness
from events.sequencer_support import (
    BATCH,
    POSTGRES_ONLY,
    assert_copied_once_in_order,
    rounds_until_idle,
    transfers,
)

pytestmark = POSTGRES_ONLY


@pytest.fixture
async def h(isolated_database_url: str) -> AsyncIterator[Harness]:
    """A worker whose sequencer copies at most `BATCH` transfers a round."""
    async with harness(isolated_database_url, events_batch_size_max=BATCH) as opened:
        yield opened


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

"""The sequencer's standby (PostgreSQL, running workers): a worker that found the sequencer
held by another leaves it to that one while it keeps moving, so the holder's rounds copy the
batches it read ahead; once the holder stops moving it, the worker standing by takes over.
Throughout, every transfer becomes exactly one event, in the ledger's order."""

from __future__ import annotations

from collections.abc import AsyncIterator

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

STANDBY_S = 1.0


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def h(isolated_database_url: str) -> AsyncIterator[Harness]:
    async with harness(isolated_database_url, events_batch_size_max=BATCH) as opened:
        yield opened


def sequencer(h: Harness, seconds: Seconds) -> Sequencer:
    made = Sequencer(
        h.unit_of_work,
        h.ledger,
        clock=SystemClock(),
        batch_size_max=BATCH,
        row_locks=True,
        monotonic=seconds,
    )
    made.standby_s = STANDBY_S
    return made


async def held_elsewhere(h: Harness, rival: Sequencer) -> int:
    """`rival`'s round while another transaction holds the sequencer's cursor."""
    async with h.unit_of_work.begin() as session:
        assert await repository.lock_sequencer(session) is not None
        return await rival.run_once()


async def test_a_worker_that_found_the_sequencer_held_leaves_it_while_its_holder_works(
    h: Harness,
) -> None:
    ids = await transfers(h, 12)
    seconds = Seconds()
    holder, rival = sequencer(h, seconds), sequencer(h, seconds)
    assert await held_elsewhere(h, rival) == 0
    assert rival.standing_by
    assert await holder.run_once() == 3  # and reads 4..6 ahead
    seconds.now += STANDBY_S * 0.9
    assert await rival.run_once() == 0  # free now, but it stands by
    seconds.now += STANDBY_S * 0.2
    assert not rival.standing_by
    # Its wait is over, but the holder moved the sequencer meanwhile: it stands by again.
    assert await rival.run_once() == 0
    assert rival.standing_by
    assert await holder.run_once() == 3  # 4..6, as read ahead
    assert holder.reads_ahead_used == 1
    seconds.now += STANDBY_S * 1.1
    # The holder moved it again during this wait too.
    assert await rival.run_once() == 0
    seconds.now += STANDBY_S * 1.1
    # Not this time: the holder stopped, and the rival takes over where it stopped.
    assert await rival.run_once() == 3  # 7..9
    assert not rival.standing_by
    assert await rounds_until_idle(rival) == 1  # 10..12
    await assert_copied_once_in_order(h, ids)


async def test_without_a_standby_a_worker_tries_again_at_its_next_round(h: Harness) -> None:
    """`drain` and the tests run rounds by hand: they leave `standby_s` at 0."""
    ids = await transfers(h, 3)
    rival = sequencer(h, Seconds())
    rival.standby_s = 0.0
    assert await held_elsewhere(h, rival) == 0
    assert not rival.standing_by
    assert await rival.run_once() == 3
    await assert_copied_once_in_order(h, ids)


async def test_the_worker_loops_stand_by(h: Harness) -> None:
    """Started, a worker sets its sequencer's standby (`SEQUENCER_STANDBY_S`); stopped, it
    puts it back to 0 for `drain`."""
    from billfold.worker import SEQUENCER_STANDBY_S

    assert h.worker.sequencer.standby_s == 0.0
    h.worker.start(scheduled=False)
    try:
        assert h.worker.sequencer.standby_s == SEQUENCER_STANDBY_S > 0
    finally:
        await h.worker.stop()
    assert h.worker.sequencer.standby_s == 0.0

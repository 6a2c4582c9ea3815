"""Helpers for the sequencer's tests (PostgreSQL): a batch small enough that a few
transfers take several rounds, transfers to copy, rounds run by hand, and the check that
every transfer became one event, in order, in a log numbered without holes."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from billfold.events.dispatch import Sequencer
from billfold.events.ledger_events import transfer_event_id
from billfold.events.models import OutboxEvent
from events.events_support import Harness, open_accounts, transfer

__all__ = [
    "BATCH",
    "POSTGRES_ONLY",
    "assert_copied_once_in_order",
    "rounds_until_idle",
    "transfers",
]

POSTGRES_ONLY = [
    pytest.mark.anyio,
    pytest.mark.postgres_only,
    pytest.mark.parametrize("backend", ["postgresql"]),
]
"""The marks of a sequencer test module: the read-ahead and the standby need row locks."""

BATCH = 3
"""Transfers a sequencer round copies at most, in these tests."""


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


async def rounds_until_idle(sequencer: Sequencer) -> int:
    rounds = 0
    while await sequencer.run_once():
        rounds += 1
    return rounds

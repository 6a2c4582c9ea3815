"""The worker's reads of the log. On PostgreSQL they go through asyncpg directly (in the
session's transaction) rather than SQLAlchemy's rows: they must return what the ORM reads,
on both backends, for every way a channel reads (`Reads`)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from billfold.events import repository
from billfold.events.outbox import emit
from billfold.events.types import EVENT_PARTITIONS, Event, Reads
from billfold.kit.auth import Mode
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio

ALL_PARTITIONS = list(range(EVENT_PARTITIONS))
PAYLOADS = [
    {"amount": "250", "currency": "EUR"},
    {"note": "naïve café ✓", "nested": {"list": [1, 2.5, None, True]}, "empty": {}},
    {},
]


async def _log(unit_of_work: UnitOfWork, tenant: uuid.UUID) -> list[uuid.UUID]:
    """Emit one event per payload, then number them (as the sequencer does)."""
    ids = []
    async with unit_of_work.begin() as session:
        for i, payload in enumerate(PAYLOADS):
            aggregate = new_id()
            ids.append(
                emit(
                    session,
                    tenant_id=tenant,
                    mode=Mode.TEST,
                    type="com.billfold.payment.captured.v1",
                    subject=f"pay_{aggregate.hex}",
                    aggregate_id=aggregate,
                    data=payload,
                    occurred_at_ns=1_700_000_000_000_000_000 + i,
                )
            )
    async with unit_of_work.begin() as session:
        last = await repository.last_seq(session)
        await repository.number_unsequenced(session, last_seq=last, limit=100)
    return ids


def _same_event(read: Event, stored: Event, reads: Reads) -> None:
    attributes = ("id", "tenant_id", "mode", "type", "subject", "aggregate_id", "partition")
    for name in (*attributes, "occurred_at", "seq"):
        assert getattr(read, name) == getattr(stored, name), name
    assert isinstance(read.id, uuid.UUID) and isinstance(read.seq, int)
    if reads is Reads.DATA:
        assert read.data == stored.data and read.data_json is None
    elif reads is Reads.RAW:
        assert read.data == {} and json.loads(read.data_json or "") == stored.data
    else:
        assert read.data == {} and read.data_json is None


@pytest.mark.parametrize("reads", [Reads.DATA, Reads.RAW, Reads.ROWS])
async def test_reads_of_the_log_return_what_the_orm_stored(
    isolated_database_url: str, reads: Reads
) -> None:
    engine = create_engine(parse_database_url(isolated_database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    tenant, other = new_id(), new_id()
    try:
        ids = await _log(unit_of_work, tenant)
        await _log(unit_of_work, other)
        async with unit_of_work.begin() as session:
            stored = {}
            for event_id in ids:
                found = await repository.event_by_id(
                    session, tenant_id=tenant, mode="test", event_id=event_id
                )
                assert found is not None
                stored[event_id] = found
            after = await repository.events_after(
                session, partitions=ALL_PARTITIONS, after_seq=0, limit=100, reads=reads
            )
            mine = await repository.events_after(
                session,
                partitions=ALL_PARTITIONS,
                after_seq=0,
                limit=100,
                reads=reads,
                tenants=[tenant],
            )
            first = await repository.events_after(
                session, partitions=ALL_PARTITIONS, after_seq=0, limit=2, reads=reads
            )
            by_id = await repository.events_by_id(session, ids, raw=reads is Reads.RAW)
        assert len(after) == 2 * len(PAYLOADS)
        assert [e.seq for e in after] == sorted(e.seq for e in after)
        assert [e.id for e in mine] == ids and first == after[:2]
        for event in mine:
            _same_event(event, stored[event.id], reads)
        if reads is not Reads.ROWS:
            assert by_id.keys() == set(ids)
            for event_id, event in by_id.items():
                _same_event(event, stored[event_id], reads)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_read_that_opens_a_transaction_runs_inside_it(database_url: str) -> None:
    """SQLAlchemy's driver adapter sends BEGIN with a transaction's first statement; a read
    through asyncpg that comes first must begin it rather than run outside it."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    unit_of_work = UnitOfWork(engine)
    try:
        async with unit_of_work.begin() as session:
            await repository.events_after(
                session, partitions=[0], after_seq=2**62, limit=1, reads=Reads.RAW
            )
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            assert raw.driver_connection.is_in_transaction()  # type: ignore[union-attr]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize(("payload", "seq"), [({"a": [1]}, 7), (None, None), ('{"a":1}', 3)])
def test_events_built_from_rows_are_what_the_constructor_makes(
    raw: bool, payload: object, seq: int | None
) -> None:
    """`_event` sets `Event`'s slots directly (its frozen `__init__` is slow per event): the
    result must be the constructor's, field for field, and as frozen."""
    row = (new_id(), new_id(), "test", "com.x.y.v1", "pay_1", new_id(), 5, payload, 9, seq)
    built = repository._event(row, raw=raw)
    stored = payload if raw else None
    expected = Event(
        id=row[0],
        tenant_id=row[1],
        mode="test",
        type="com.x.y.v1",
        subject="pay_1",
        aggregate_id=row[5],
        partition=5,
        data={} if raw else (payload or {}),  # type: ignore[arg-type]
        occurred_at=9,
        seq=-1 if seq is None else seq,
        data_json=("{}" if stored is None else stored) if raw else None,  # type: ignore[arg-type]
    )
    assert built == expected and repr(built) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seq = 1  # type: ignore[misc]

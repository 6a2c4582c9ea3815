"""`DriverStatement`: hot-path statements on the session's own connection and transaction,
with bound values converted as SQLAlchemy would (UUIDs on SQLite), on both backends."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, bindparam, or_, select

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.driver import DriverStatement

pytestmark = pytest.mark.anyio

PROBES = Table(
    f"driver_probes_{uuid.uuid4().hex[:8]}",
    MetaData(),
    Column("id", Uuid, primary_key=True),
    Column("owner", Uuid, nullable=False),
    Column("name", String(20), nullable=False),
    Column("n", Integer, nullable=False),
)
INSERT = DriverStatement(PROBES.insert())
OWNED_ABOVE_TWO = DriverStatement(
    select(PROBES.c.name, PROBES.c.n)
    .where(PROBES.c.owner == bindparam("owner"), PROBES.c.n > 2)  # a constant, bound once
    .order_by(PROBES.c.n)
)
NAMED = DriverStatement(
    select(PROBES.c.n).where(or_(PROBES.c.name == "a", PROBES.c.name == bindparam("other")))
)


def _rows(owner: uuid.UUID, count: int) -> list[dict[str, object]]:
    return [
        {"id": uuid.uuid4(), "owner": owner, "name": "abcdefgh"[n], "n": n} for n in range(count)
    ]


async def test_writes_and_reads_share_the_sessions_transaction(database_url: str) -> None:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(PROBES.create)
        unit_of_work = UnitOfWork(engine)
        owner, other_owner = uuid.uuid4(), uuid.uuid4()
        async with unit_of_work.begin() as session:
            await INSERT.execute_many(session, _rows(owner, 5))
            await INSERT.execute_many(session, _rows(other_owner, 1))
            # Uncommitted, yet seen: the same connection and transaction.
            assert [
                tuple(row) for row in await OWNED_ABOVE_TWO.fetch(session, {"owner": owner})
            ] == [
                ("d", 3),
                ("e", 4),
            ]

        async def write_then_fail() -> None:
            async with unit_of_work.begin() as session:
                await INSERT.execute_many(session, _rows(owner, 8))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await write_then_fail()
        async with unit_of_work.begin() as session:
            assert len(await OWNED_ABOVE_TWO.fetch(session, {"owner": owner})) == 2
            assert sorted(row[0] for row in await NAMED.fetch(session, {"other": "c"})) == [
                0,
                0,
                2,
            ]
            assert await OWNED_ABOVE_TWO.fetch(session, {"owner": uuid.uuid4()}) == []
            with pytest.raises(KeyError):
                await OWNED_ABOVE_TWO.fetch(session, {})
            await INSERT.execute_many(session, [])  # nothing to write is no statement
        async with engine.begin() as connection:
            await connection.run_sync(PROBES.drop)
    finally:
        await engine.dispose()


async def test_a_statement_run_alone_reads_committed_rows_outside_any_transaction(
    database_url: str, backend: str
) -> None:
    """`UnitOfWork.fetch_alone`: the same rows as through a session, committed ones only;
    on PostgreSQL no transaction is begun for it (one round trip)."""
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(PROBES.create)
        unit_of_work = UnitOfWork(engine)
        owner = uuid.uuid4()
        async with unit_of_work.begin() as session:
            await INSERT.execute_many(session, _rows(owner, 5))
        statements: list[str] = []
        if backend == "postgresql":
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                driver.add_query_logger(lambda record: statements.append(record.query))
        alone = await unit_of_work.fetch_alone(OWNED_ABOVE_TWO, {"owner": owner})
        assert [tuple(row) for row in alone] == [("d", 3), ("e", 4)]
        if backend == "postgresql":  # one connection serves this whole test: it ran there
            assert statements == [OWNED_ABOVE_TWO._compile(engine.dialect).sql]
        with pytest.raises(KeyError):
            await unit_of_work.fetch_alone(OWNED_ABOVE_TWO, {})
        async with engine.begin() as connection:
            await connection.run_sync(PROBES.drop)
    finally:
        await engine.dispose()

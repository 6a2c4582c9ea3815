"""Database URLs: SQLite and PostgreSQL are recognised, anything else refused clearly."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billfold.kit.db import InvalidDatabaseUrl, UnitOfWork, create_engine, parse_database_url


def test_sqlite_urls_name_a_file() -> None:
    target = parse_database_url("sqlite:///billfold.db")
    assert (target.kind, target.sqlite_path) == ("sqlite", "billfold.db")
    assert target.sqlalchemy_url == "sqlite+aiosqlite:///billfold.db"
    assert parse_database_url("sqlite:////var/lib/b.db").sqlite_path == "/var/lib/b.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_postgresql_urls_in_every_common_spelling(scheme: str) -> None:
    target = parse_database_url(f"{scheme}://postgres@/db?host=/var/run/postgresql")
    assert target.kind == "postgresql"
    assert target.asyncpg_dsn == "postgresql://postgres@/db?host=/var/run/postgresql"
    assert target.sqlalchemy_url.startswith("postgresql+asyncpg://postgres@/db")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "mysql://x@y/z", "", "db"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl):
        parse_database_url(url)


async def _backend_pid(unit_of_work: UnitOfWork) -> int:
    async with unit_of_work.begin() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(database_url: str, pid: int) -> None:
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await engine.dispose()


@pytest.mark.anyio
@pytest.mark.postgres_only
async def test_an_idle_pooled_connection_the_server_dropped_is_replaced(
    shared_postgres_url: str,
) -> None:
    # ping_after_idle_s=0: every checkout counts as idle, so the dead connection is found.
    engine = create_engine(
        parse_database_url(shared_postgres_url), pool_size=1, ping_after_idle_s=0
    )
    try:
        unit_of_work = UnitOfWork(engine)
        first = await _backend_pid(unit_of_work)
        await _terminate(shared_postgres_url, first)
        assert await _backend_pid(unit_of_work) != first  # no error: a new connection
    finally:
        await engine.dispose()


@pytest.mark.anyio
@pytest.mark.postgres_only
async def test_a_connection_used_moments_ago_is_not_pinged(shared_postgres_url: str) -> None:
    # The other side of the trade: within `ping_after_idle_s` of its last use the pool trusts
    # the connection, so a server that dropped it in between costs that one use, no more.
    engine = create_engine(
        parse_database_url(shared_postgres_url), pool_size=1, ping_after_idle_s=3600
    )
    try:
        unit_of_work = UnitOfWork(engine)
        first = await _backend_pid(unit_of_work)
        await _terminate(shared_postgres_url, first)
        with pytest.raises(DBAPIError):
            await _backend_pid(unit_of_work)
        assert await _backend_pid(unit_of_work) != first
    finally:
        await engine.dispose()

"""The ledger's PostgreSQL pool: a released connection is reset without a round trip
unless a transaction was left open, which is rolled back before the next use."""

from __future__ import annotations

import pytest

from billfold.kit.db import parse_database_url
from billfold.ledger.repository_postgres import PostgresLedgerRepository

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_released_connection_is_reused_without_the_default_reset_query(
    database_url: str,
) -> None:
    repository = PostgresLedgerRepository(
        parse_database_url(database_url).asyncpg_dsn, pool_size=1, connect_timeout_s=5
    )
    await repository.open()
    sent: list[str] = []
    try:
        pool = repository._require_pool()
        async with pool.acquire() as connection:
            connection.add_query_logger(lambda record: sent.append(record.query))
        await repository.ping()  # a ledger call on the pool's one connection
        await repository.ping()
        assert sent and not any("RESET ALL" in query for query in sent)
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")  # left open: released inside a transaction
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert sent[-1] == "ROLLBACK"
    finally:
        await repository.close()

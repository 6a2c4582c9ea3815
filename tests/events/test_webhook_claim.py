"""The sender's claim on PostgreSQL plans with the values at hand, every time.

asyncpg prepares each statement once per connection; after five executions PostgreSQL may
keep a generic plan for it. The claim's generic plan, made while the deliveries table was
small and never analyzed, kept claims of a backlog running for seconds on end while they
held the row locks that the other sender's recording waited for (bench/events.py)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from billfold.events import repository
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url

pytestmark = pytest.mark.anyio


PLANNER_SETTINGS = ("enable_seqscan", "enable_bitmapscan", "enable_sort", "plan_cache_mode")


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_worker_plans_index_walks_and_only_in_its_transaction(
    database_url: str,
) -> None:
    """The sender's claim (and the dispatchers' reads) run after `plan_with_indexes`: index
    walks planned for this run's values, even past the executions after which a generic
    plan may be kept; the settings end with the transaction."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    unit_of_work = UnitOfWork(engine)
    try:
        for _ in range(7):
            async with unit_of_work.begin() as session:
                await repository.plan_with_indexes(session)
                now_ns = time.time_ns()
                await repository.claim_due_deliveries(
                    session, now_ns=now_ns, limit=10, lock=True, leased_until=now_ns + 1
                )
                settings = [await session.scalar(text(f"SHOW {n}")) for n in PLANNER_SETTINGS]
                assert settings == ["off", "off", "off", "force_custom_plan"]
        async with unit_of_work.begin() as session:
            settings = [await session.scalar(text(f"SHOW {n}")) for n in PLANNER_SETTINGS]
            assert settings == ["on", "on", "on", "auto"]
    finally:
        await engine.dispose()

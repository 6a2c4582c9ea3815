"""The sender's claim on PostgreSQL plans with the values at hand, every time.

asyncpg prepares each statement once per connection; after five executions PostgreSQL may
keep a generic plan for it. The claim's generic plan, made while the deliveries table was
small and never analyzed, kept claims of a backlog running for seconds on end while they
held the row locks that the other sender's recording waited for (bench/events.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.models import WebhookEndpoint
from billfold.events.types import EVENT_PARTITIONS
from billfold.events.webhooks import new_secret
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio


PLANNER_SETTINGS = (
    "enable_seqscan",
    "enable_bitmapscan",
    "enable_sort",
    "plan_cache_mode",
    "jit",
)


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
                assert settings == ["off", "off", "off", "force_custom_plan", "off"]
        async with unit_of_work.begin() as session:
            settings = [await session.scalar(text(f"SHOW {n}")) for n in PLANNER_SETTINGS[:4]]
            assert settings == ["on", "on", "on", "auto"]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_cursor_claim_is_planned_without_compiling_it(database_url: str) -> None:
    """With sorts disabled the claim's ORDER BY still plans a sort, at a cost of 10^10
    that crosses every JIT threshold: PostgreSQL compiled that 16-row query with LLVM at
    every round, 50 to 150 ms of server CPU each (where the server has JIT). The worker's
    transactions plan without JIT."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    unit_of_work = UnitOfWork(engine)
    claim = repository.cursor_claim(channel="nats", limit=8, offset=3, lock=True)
    sql = str(claim.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
    try:
        async with unit_of_work.begin() as session:
            await repository.plan_with_indexes(session)
            plan = await session.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
            assert "Sort" in str(plan)  # still the plan whose cost is 10^10
            assert "JIT" not in plan[0]
            cursors = (await session.scalars(claim)).all()
            assert len(cursors) <= min(8, EVENT_PARTITIONS)
    finally:
        await engine.dispose()


def _endpoint(endpoint_id: uuid.UUID, now_ns: int) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=endpoint_id,
        tenant_id=new_id(),
        mode="test",
        url="https://hooks.example/",
        description="",
        event_types=[],
        status="enabled",
        batch_size_max=1,
        secret=new_secret(),
        created_at=now_ns,
        updated_at=now_ns,
    )


async def _backlog(session: AsyncSession, endpoint_id: uuid.UUID, count: int, now_ns: int) -> None:
    """An enabled endpoint with `count` pending deliveries due at `now_ns`."""
    session.add(_endpoint(endpoint_id, now_ns))
    await session.flush()
    await repository.insert_deliveries(session, _pending(endpoint_id, range(1, count + 1), now_ns))


@asynccontextmanager
async def _backlog_session(
    database_url: str, count: int
) -> AsyncIterator[tuple[AsyncSession, int]]:
    """A transaction over `count` pending deliveries of one new endpoint, planned with the
    worker's settings (`plan_with_indexes`); and the time they were made due."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    now_ns = time.time_ns()
    try:
        async with UnitOfWork(engine).begin() as session:
            await _backlog(session, new_id(), count, now_ns)
            await repository.plan_with_indexes(session)
            yield session, now_ns
    finally:
        await engine.dispose()


def _pending(endpoint_id: uuid.UUID, seqs: range, now_ns: int) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id(),
            "endpoint_id": endpoint_id,
            "tenant_id": endpoint_id,
            "event_id": new_id(),
            "event_seq": seq,
            "aggregate_id": new_id(),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now_ns,
            "leased_until": None,
            "last_status_code": None,
            "replay": 0,
            "created_at": now_ns,
            "completed_at": None,
        }
        for seq in seqs
    ]


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_lease_stays_on_its_page(isolated_database_url: str) -> None:
    """Deliveries leave half of each page free (migration 0026): the sender's lease, which
    changes no indexed column, is then a HOT update. On full pages it was a new row version
    with an entry in each of the five indexes, as costly as the insert (bench/events.py:
    49 µs of statement time per lease, 7 µs with the free half)."""
    async with _backlog_session(isolated_database_url, 400) as (session, now_ns):
        leased = await repository.claim_due_deliveries(
            session, now_ns=now_ns, limit=400, lock=True, leased_until=now_ns + 1
        )
        assert len(leased) == 400
        hot, updated = (
            await session.execute(
                text(
                    "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_xact_user_tables"
                    " WHERE relname = 'events_webhook_deliveries'"
                )
            )
        ).one()
    assert updated == 400
    assert hot >= 0.9 * updated  # none at full pages; a page's last row may not fit


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_claim_and_its_lease_walk_indexes_in_one_statement(
    isolated_database_url: str,
) -> None:
    """On PostgreSQL the claim locks, checks and leases in one statement. Planned with the
    worker's settings over a backlog of a table never analyzed, it walks the due index,
    and looks each row's endpoint and earlier deliveries up by index: not by a walk over
    every pending delivery per row (no sequential scan, no sort, no JIT either)."""
    async with _backlog_session(isolated_database_url, 5000) as (session, now_ns):
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        explained = await driver.fetchval(  # type: ignore[union-attr]
            f"EXPLAIN (FORMAT JSON) {repository.DUE_DELIVERIES_CLAIM}", now_ns, 100, now_ns + 1
        )
        plan = json.dumps(explained)
        assert plan.count("ix_events_webhook_deliveries_due") == 1
        assert "ix_events_webhook_deliveries_order" in plan
        assert "Seq Scan" not in plan and "JIT" not in plan and '"Sort"' not in plan
        leased = await repository.claim_due_deliveries(
            session, now_ns=now_ns, limit=100, lock=True, leased_until=now_ns + 1
        )
        assert len(leased) == 100
        assert (
            await session.scalar(
                text("SELECT count(*) FROM events_webhook_deliveries WHERE leased_until = :t"),
                {"t": now_ns + 1},
            )
            == 100
        )

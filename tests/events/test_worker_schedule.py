"""The worker's scheduled purges: the risk engine's velocity counters go once no window
reaches them, in `billfold worker` and beside `billfold serve`'s embedded worker alike, and
a stop lets a purge in progress finish its round instead of cutting its transaction short."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold import worker as worker_module
from billfold.app import create_app
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import new_id
from billfold.kit.settings import Settings
from billfold.risk.features.models import RiskCounter
from events.events_support import harness
from identity.identity_support import run_in_unit_of_work

DAY_NS = 86_400 * NANOSECONDS_PER_SECOND


def _counter(tenant_id: uuid.UUID, key: str, expires_at: int | None) -> RiskCounter:
    return RiskCounter(
        tenant_id=tenant_id,
        mode="test",
        key=key,
        width_s=0 if expires_at is None else 60,
        bucket=0 if expires_at is None else 1,
        count=1,
        amount=100,
        amount_squares=0.0,
        expires_at=expires_at,
    )


async def _keys(session: AsyncSession, tenant_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(RiskCounter.key).where(RiskCounter.tenant_id == tenant_id).order_by(RiskCounter.key)
    )
    return list(rows)


async def _counter_keys(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> list[str]:
    async with unit_of_work.begin() as session:
        return await _keys(session, tenant_id)


@pytest.mark.anyio
async def test_the_purge_deletes_counters_past_their_expiry_and_nothing_more(
    isolated_database_url: str,
) -> None:
    """A counter whose `expires_at` has passed goes; one expiring later or never (seen
    members and histories) stays."""
    now_ns = time.time_ns()
    tenant_id = new_id()
    async with harness(isolated_database_url, clock=ManualClock(start_ns=now_ns)) as h:
        async with h.unit_of_work.begin() as session:
            session.add_all(
                [
                    _counter(tenant_id, "before", now_ns - 1),
                    _counter(tenant_id, "later", now_ns + DAY_NS),
                    _counter(tenant_id, "never", None),
                ]
            )
        await h.worker.purge()
        assert await _counter_keys(h.unit_of_work, tenant_id) == ["later", "never"]


def test_the_embedded_worker_purges_expired_risk_counters(isolated_database_url: str) -> None:
    """`billfold serve` alone (the embedded worker) purges the velocity counters too, every
    `idempotency_purge_interval_s`: they used to be purged by `billfold worker` only, so a
    single process's `risk_counters` grew for good."""
    tenant_id = new_id()
    now_ns = time.time_ns()

    async def counters(session: AsyncSession) -> None:
        session.add_all(
            [
                _counter(tenant_id, "expired", now_ns - DAY_NS),
                _counter(tenant_id, "current", now_ns + DAY_NS),
            ]
        )

    async def keys(session: AsyncSession) -> list[str]:
        return await _keys(session, tenant_id)

    run_in_unit_of_work(isolated_database_url, counters)
    settings = Settings(
        database_url=isolated_database_url,
        embedded_worker=True,  # the suite's default is off
        idempotency_purge_interval_s=1,
    )
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 15
        while run_in_unit_of_work(isolated_database_url, keys) != ["current"]:
            assert time.monotonic() < deadline, "the expired counter was not purged"
            time.sleep(0.2)


@pytest.mark.anyio
async def test_stopping_lets_a_purge_in_progress_finish(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the loops do: cancelled, the purge's transaction would be rolled back by a
    cancelled rollback (on SQLite such a connection kept the write lock)."""
    inside, release = asyncio.Event(), asyncio.Event()
    purged: list[int] = []
    real_purge = worker_module.purge_risk_counters

    async def slow_purge(unit_of_work: UnitOfWork, *, now_ns: int) -> int:
        inside.set()
        await release.wait()
        purged.append(await real_purge(unit_of_work, now_ns=now_ns))
        return purged[-1]

    monkeypatch.setattr(worker_module, "purge_risk_counters", slow_purge)
    async with harness(isolated_database_url, idempotency_purge_interval_s=1) as h:
        h.worker.start(scheduled=True)
        await asyncio.wait_for(inside.wait(), 10)
        stopping = asyncio.create_task(h.worker.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waiting for the round, not cancelling it
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert purged == [0]

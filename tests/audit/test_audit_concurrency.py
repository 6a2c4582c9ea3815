"""Concurrent appenders never fork a chain: PostgreSQL serializes them on the chain head
row (SQLite's writers are serialized by BEGIN IMMEDIATE, tested alike)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from audit.audit_support import audit_service, opened, signer
from billfold.audit import service
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio
APPENDERS = 8
APPENDS_EACH = 15


async def _appender(unit_of_work: UnitOfWork, *, tenant_id: uuid.UUID, worker: int) -> None:
    for index in range(APPENDS_EACH):
        async with unit_of_work.begin() as session:
            await service.append(
                session,
                tenant_id=tenant_id,
                action="login.succeeded",
                occurred_at=index,
                actor_type="user",
                actor_id=f"usr_{worker:032x}",
                detail={"worker": worker, "index": index},
            )
            await asyncio.sleep(0)  # let the others queue on the head lock mid-transaction


async def test_concurrent_appenders_build_one_chain(database_url: str, backend: str) -> None:
    tenant_id = new_id()  # a brand-new chain: its head row is created by a race, too
    async with opened(database_url, pool_size=APPENDERS) as unit_of_work:
        await asyncio.gather(
            *(
                _appender(unit_of_work, tenant_id=tenant_id, worker=worker)
                for worker in range(APPENDERS)
            )
        )
        [report] = await audit_service(unit_of_work).verify(chain_ids=[tenant_id])
        async with unit_of_work.begin() as session:
            page = await service.list_entries(session, tenant_id=tenant_id, cursor=None, limit=500)
    assert report.ok, report.problem
    assert report.entries_checked == APPENDERS * APPENDS_EACH
    assert [entry.sequence for entry in page.items] == list(range(1, APPENDERS * APPENDS_EACH + 1))
    assert len({entry.previous_hash for entry in page.items}) == APPENDERS * APPENDS_EACH


async def test_checkpointing_while_appending_keeps_the_chain_whole(database_url: str) -> None:
    tenant_id = new_id()
    async with opened(database_url, pool_size=APPENDERS) as unit_of_work:
        audit = audit_service(unit_of_work, entries_max=7)

        async def checkpoints() -> None:
            for _ in range(10):
                async with unit_of_work.begin() as session:
                    await service.create_checkpoint(
                        session,
                        chain_id=tenant_id,
                        signer=signer(),
                        now_ns=1,
                        entries_max=7,
                    )
                await asyncio.sleep(0.01)

        await asyncio.gather(
            checkpoints(),
            *(_appender(unit_of_work, tenant_id=tenant_id, worker=worker) for worker in range(3)),
        )
        [report] = await audit.verify(chain_ids=[tenant_id])
    assert report.ok, report.problem
    assert report.checkpoints_checked >= 1

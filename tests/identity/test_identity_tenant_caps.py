"""A tenant's caps on what it holds (unrevoked API keys, operators) hold under concurrent
creations: each is counted with the tenant's row locked until the creation commits, so a
second creation waits and counts the first's row. On both backends (the caps made small
here; the counting is the same)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import service
from billfold.identity.errors import ApiKeyLimitReached
from billfold.identity.models import ApiKey
from billfold.identity.operators import service as operators
from billfold.identity.operators.errors import OperatorLimitReached
from billfold.identity.operators.models import Operator
from billfold.identity.operators.permissions import Role
from billfold.identity.operators.types import Actor
from billfold.identity.types import Mode, Scope
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import BillfoldError
from identity.identity_support import bootstrap_tenant, run_in_unit_of_work
from identity.operators.operators_support import FAST_PASSWORDS, PASSWORD

pytestmark = pytest.mark.anyio


async def _new_key(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    await service.create_api_key(
        session,
        tenant_id=tenant_id,
        name="k",
        mode=Mode.TEST,
        scopes=[Scope.LEDGER_READ],
        expires_at_ns=None,
        now_ns=time.time_ns(),
    )


async def _new_operator(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    address = f"{uuid.uuid4().hex[:12]}@example.com"
    await operators.create_operator(
        session,
        tenant_id=tenant_id,
        email=address,
        display_name=address,
        roles=[Role.SUPPORT],
        password=PASSWORD,
        actor=Actor.system(),
        now_ns=time.time_ns(),
        passwords=FAST_PASSWORDS,
    )


async def _last_place_taken_twice(
    database_url: str,
    tenant_id: uuid.UUID,
    create: Callable[[AsyncSession, uuid.UUID], Awaitable[None]],
    refusal: type[BillfoldError],
) -> BillfoldError | None:
    """Take the last place in one transaction while a second creation starts before it
    commits; the second's outcome. On PostgreSQL the two truly overlap (unguarded, the
    second counts the first's row as absent); SQLite's writer lock serializes them."""
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)

    async def second() -> BillfoldError | None:
        try:
            async with unit_of_work.begin() as session:
                await create(session, tenant_id)
        except refusal as refused:
            return refused
        return None

    try:
        async with unit_of_work.begin() as session:
            await create(session, tenant_id)  # the last place
            overlapping = asyncio.create_task(second())
            await asyncio.sleep(0.5)  # it counts (and, unguarded, inserts) while this is open
        return await overlapping
    finally:
        await engine.dispose()


def _count(database_url: str, model: type[ApiKey] | type[Operator], tenant_id: uuid.UUID) -> int:
    async def count(session: AsyncSession) -> int:
        statement = select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
        return int((await session.execute(statement)).scalar_one())

    return run_in_unit_of_work(database_url, count)


async def test_concurrent_key_creations_cannot_both_take_the_last_place(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id = await asyncio.to_thread(lambda: bootstrap_tenant(database_url).tenant.id)
    monkeypatch.setattr(service, "API_KEYS_PER_TENANT_MAX", 3)  # the two first keys hold two
    outcome = await _last_place_taken_twice(database_url, tenant_id, _new_key, ApiKeyLimitReached)
    assert type(outcome) is ApiKeyLimitReached, outcome
    assert await asyncio.to_thread(_count, database_url, ApiKey, tenant_id) == 3


async def test_concurrent_operator_creations_cannot_both_take_the_last_place(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id = await asyncio.to_thread(lambda: bootstrap_tenant(database_url).tenant.id)
    monkeypatch.setattr(operators, "OPERATORS_PER_TENANT_MAX", 1)
    outcome = await _last_place_taken_twice(
        database_url, tenant_id, _new_operator, OperatorLimitReached
    )
    assert type(outcome) is OperatorLimitReached, outcome
    assert await asyncio.to_thread(_count, database_url, Operator, tenant_id) == 1

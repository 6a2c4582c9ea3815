"""A tenant keeps at least one active administrator even when two administrators disable
(or demote) each other at the same moment: the second change waits for the first and then
sees that it would remove the last one (409 ``last_administrator``). On PostgreSQL the two
transactions truly overlap; on SQLite the writer lock already serializes them, so there the
test only confirms the outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators import service
from billfold.identity.operators.errors import LastAdministrator
from billfold.identity.operators.models import Operator
from billfold.identity.operators.permissions import Role
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from identity.operators.operators_support import new_tenant, operator, principal_of

pytestmark = pytest.mark.anyio
Change = Callable[[AsyncSession, OperatorPrincipal, uuid.UUID], Awaitable[Operator]]


async def _disable(session: AsyncSession, by: OperatorPrincipal, whom: uuid.UUID) -> Operator:
    return await service.set_operator_status(
        session,
        principal=by,
        tenant_id=by.tenant_id,
        operator_id=whom,
        active=False,
        actor=by.actor,
        now_ns=SystemClock().now_ns(),
    )


async def _demote(session: AsyncSession, by: OperatorPrincipal, whom: uuid.UUID) -> Operator:
    return await service.set_operator_roles(
        session,
        principal=by,
        tenant_id=by.tenant_id,
        operator_id=whom,
        roles=[Role.SUPPORT],
        actor=by.actor,
        now_ns=SystemClock().now_ns(),
    )


async def _active_admins(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> int:
    async with unit_of_work.begin() as session:
        statement = select(Operator).where(
            Operator.tenant_id == tenant_id, Operator.status == "active"
        )
        rows = (await session.execute(statement)).scalars()
        return sum(Role.ADMIN in service.roles_of(row) for row in rows)


@pytest.fixture
def admins(database_url: str) -> tuple[OperatorPrincipal, OperatorPrincipal]:
    """Two signed-in administrators of a new tenant (made before the test's event loop)."""
    tenant_id = new_tenant(database_url).tenant.id
    first, second = (
        principal_of(database_url, operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN]))
        for _ in range(2)
    )
    return first, second


@pytest.mark.parametrize("change", [_disable, _demote], ids=["disable", "demote"])
async def test_two_admins_removing_each_other_at_once_leave_one(
    database_url: str, admins: tuple[OperatorPrincipal, OperatorPrincipal], change: Change
) -> None:
    first, second = admins
    tenant_id = first.tenant_id
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)

    async def second_removes_first() -> Operator | LastAdministrator:
        try:
            async with unit_of_work.begin() as session:
                return await change(session, second, first.operator_id)
        except LastAdministrator as refused:
            return refused

    try:
        async with unit_of_work.begin() as session:
            await change(session, first, second.operator_id)
            overlapping = asyncio.create_task(second_removes_first())
            await asyncio.sleep(0.5)  # it checks (and, unguarded, decides) while this one is open
        outcome = await overlapping
        remaining = await _active_admins(unit_of_work, tenant_id)
    finally:
        await engine.dispose()
    assert isinstance(outcome, LastAdministrator), outcome
    assert remaining == 1

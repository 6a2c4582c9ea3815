"""Every query on fee schedules, scoped to one ledger tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.errors import invariant
from billfold.payments.fees.models import DEFAULT_SCOPE_KEY, FeeScheduleRow

__all__ = ["get", "get_by_scope", "list_after", "lock", "scope_key", "scopes_for"]


def scope_key(merchant_id: uuid.UUID | None) -> str:
    return DEFAULT_SCOPE_KEY if merchant_id is None else merchant_id.hex


async def get(
    session: AsyncSession, *, tenant_id: uuid.UUID, schedule_id: uuid.UUID
) -> FeeScheduleRow | None:
    found = await session.get(FeeScheduleRow, schedule_id)
    return found if found is not None and found.tenant_id == tenant_id else None


async def lock(
    session: AsyncSession, *, tenant_id: uuid.UUID, schedule_id: uuid.UUID
) -> FeeScheduleRow | None:
    """The schedule, locked for replacement (PostgreSQL; SQLite locks the whole file)."""
    statement = (
        select(FeeScheduleRow)
        .where(FeeScheduleRow.id == schedule_id, FeeScheduleRow.tenant_id == tenant_id)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_by_scope(
    session: AsyncSession, *, tenant_id: uuid.UUID, merchant_id: uuid.UUID | None
) -> FeeScheduleRow | None:
    statement = select(FeeScheduleRow).where(
        FeeScheduleRow.tenant_id == tenant_id,
        FeeScheduleRow.scope_key == scope_key(merchant_id),
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def scopes_for(
    session: AsyncSession, *, tenant_id: uuid.UUID, merchant_id: uuid.UUID | None
) -> Sequence[FeeScheduleRow]:
    """The merchant's schedule and the tenant default, whichever exist (one query)."""
    keys = [DEFAULT_SCOPE_KEY] if merchant_id is None else [DEFAULT_SCOPE_KEY, merchant_id.hex]
    statement = select(FeeScheduleRow).where(
        FeeScheduleRow.tenant_id == tenant_id, FeeScheduleRow.scope_key.in_(keys)
    )
    rows = (await session.execute(statement)).scalars().all()
    invariant(len(rows) <= 2, "at most one schedule per scope")
    return rows


async def list_after(
    session: AsyncSession, *, tenant_id: uuid.UUID, after_id: uuid.UUID | None, limit: int
) -> Sequence[FeeScheduleRow]:
    statement = select(FeeScheduleRow).where(FeeScheduleRow.tenant_id == tenant_id)
    if after_id is not None:
        statement = statement.where(FeeScheduleRow.id > after_id)
    statement = statement.order_by(FeeScheduleRow.id).limit(limit)
    return (await session.execute(statement)).scalars().all()

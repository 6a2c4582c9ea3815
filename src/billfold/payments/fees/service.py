"""Fee decisions: saving schedules (validated, versioned) and pricing movements.

Schedules belong to a ledger tenant (`Principal.ledger_tenant_id`: the tenant in one mode),
so test-mode pricing never changes live-mode fees. `FeeContext.tenant_id` is that same id.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import new_id
from billfold.kit.pagination import Page, decode_id_cursor, encode_cursor
from billfold.payments.fees import repository
from billfold.payments.fees.engine import (
    FeeSchedule,
    quote_fees,
    schedule_from_json,
    schedule_to_json,
    validate_schedule,
)
from billfold.payments.fees.errors import (
    FeeScheduleExists,
    FeeScheduleNotFound,
    FeeScheduleVersionMismatch,
)
from billfold.payments.fees.models import FeeScheduleRow
from billfold.payments.fees.types import FeeContext, FeeQuote, FeeQuoter

__all__ = [
    "create_schedule",
    "get_schedule",
    "list_schedules",
    "quote",
    "replace_schedule",
    "schedule_fee_quoter",
    "schedule_of",
]


def schedule_of(row: FeeScheduleRow) -> FeeSchedule:
    return schedule_from_json(row.rules)


async def create_schedule(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    merchant_id: uuid.UUID | None,
    name: str,
    schedule: FeeSchedule,
    now_ns: int,
) -> FeeScheduleRow:
    """A tenant's default schedule (no merchant) or a merchant's; one of each at most."""
    validate_schedule(schedule)
    if await repository.get_by_scope(session, tenant_id=tenant_id, merchant_id=merchant_id):
        raise FeeScheduleExists("Replace the existing schedule instead (PUT).")
    row = FeeScheduleRow(
        id=new_id(),
        tenant_id=tenant_id,
        merchant_id=merchant_id,
        scope_key=repository.scope_key(merchant_id),
        name=name,
        version=1,
        rules=schedule_to_json(schedule),
        created_at=now_ns,
        updated_at=now_ns,
    )
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:  # a concurrent create won the unique constraint
        raise FeeScheduleExists("Replace the existing schedule instead (PUT).") from error
    return row


async def get_schedule(
    session: AsyncSession, *, tenant_id: uuid.UUID, schedule_id: uuid.UUID
) -> FeeScheduleRow:
    row = await repository.get(session, tenant_id=tenant_id, schedule_id=schedule_id)
    if row is None:
        raise FeeScheduleNotFound()
    return row


async def list_schedules(
    session: AsyncSession, *, tenant_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[FeeScheduleRow]:
    after = None if cursor is None else decode_id_cursor(cursor)
    rows = list(
        await repository.list_after(session, tenant_id=tenant_id, after_id=after, limit=limit + 1)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=encode_cursor([rows[-1].id.hex]) if more else None)


async def replace_schedule(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    name: str,
    schedule: FeeSchedule,
    expected_version: int | None,
    now_ns: int,
) -> FeeScheduleRow:
    """Replace the rules whole; `expected_version`, when given, must be the current one."""
    validate_schedule(schedule)
    row = await repository.lock(session, tenant_id=tenant_id, schedule_id=schedule_id)
    if row is None:
        raise FeeScheduleNotFound()
    if expected_version is not None and expected_version != row.version:
        raise FeeScheduleVersionMismatch(
            f"The schedule is at version {row.version}.", current_version=row.version
        )
    row.name = name
    row.rules = schedule_to_json(schedule)
    row.version += 1
    row.updated_at = now_ns
    await session.flush()
    return row


async def quote(session: AsyncSession, context: FeeContext) -> FeeQuote:
    """The fees `context` pays under its merchant's schedule, else the tenant default."""
    rows = await repository.scopes_for(
        session, tenant_id=context.tenant_id, merchant_id=context.merchant_id
    )
    merchant = next((row for row in rows if row.merchant_id is not None), None)
    default = next((row for row in rows if row.merchant_id is None), None)
    return quote_fees(
        context=context,
        merchant_schedule=None if merchant is None else schedule_of(merchant),
        tenant_schedule=None if default is None else schedule_of(default),
    )


schedule_fee_quoter: FeeQuoter = quote
"""The `FeeQuoter` backed by stored schedules, for payment flows."""

"""Fee schedules over HTTP: create, list, get, replace (versioned), and a price preview.

Every route is scoped to the caller's `Principal.ledger_tenant_id` (tenant and mode):
another tenant's or mode's schedule is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.auth import Principal, require_scopes
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX, clamp_page_size
from billfold.payments.fees import service
from billfold.payments.fees.schemas import (
    MERCHANT_ID_PREFIX,
    SCHEDULE_ID_PREFIX,
    FeeQuoteRequest,
    FeeQuoteResponse,
    FeeScheduleCreateRequest,
    FeeSchedulePage,
    FeeScheduleReplaceRequest,
    FeeScheduleResponse,
)
from billfold.payments.fees.types import FeeContext
from billfold.wallets.errors import MerchantNotFound
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import currency_exponent

__all__ = ["FEES_READ", "FEES_WRITE", "router"]

FEES_READ = "fees:read"
FEES_WRITE = "fees:write"

router = APIRouter(prefix="/v1", tags=["fees"], responses=problem_responses(401, 403, 429))
Reader = Annotated[Principal, Depends(require_scopes(FEES_READ))]
Writer = Annotated[Principal, Depends(require_scopes(FEES_WRITE))]
_clock = SystemClock()


def get_unit_of_work(request: Request) -> UnitOfWork:
    unit_of_work = getattr(request.app.state, "unit_of_work", None)
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]


async def _require_merchant(
    session: AsyncSession, principal: Principal, merchant_id: uuid.UUID | None
) -> None:
    """A schedule or a preview names a merchant of the caller's tenant and mode: any other
    (unknown, another tenant's, the other mode's) would never be priced by it."""
    if merchant_id is None:
        return
    merchant = await WalletRepository(session).get_merchant(
        tenant_id=principal.tenant_id, mode=principal.mode.value, merchant_id=merchant_id
    )
    if merchant is None:
        raise MerchantNotFound("No such merchant.")


@router.post(
    "/fee-schedules",
    status_code=201,
    summary="Create a default or merchant schedule.",
    responses=problem_responses(400, 404, 409, 413, 422),
)
async def create_fee_schedule(
    body: FeeScheduleCreateRequest, principal: Writer, unit_of_work: Work
) -> FeeScheduleResponse:
    merchant_id = body.merchant_uuid()
    async with unit_of_work.begin() as session:
        await _require_merchant(session, principal, merchant_id)
        row = await service.create_schedule(
            session,
            tenant_id=principal.ledger_tenant_id,
            merchant_id=merchant_id,
            name=body.name,
            schedule=body.schedule(),
            now_ns=_clock.now_ns(),
        )
        return FeeScheduleResponse.from_row(row)


@router.get(
    "/fee-schedules",
    summary="List your fee schedules, oldest first.",
    responses=problem_responses(400, 422),
)
async def list_fee_schedules(
    principal: Reader,
    unit_of_work: Work,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> FeeSchedulePage:
    async with unit_of_work.read() as session:
        page = await service.list_schedules(
            session,
            tenant_id=principal.ledger_tenant_id,
            cursor=cursor,
            limit=clamp_page_size(limit),
        )
        return FeeSchedulePage(
            items=[FeeScheduleResponse.from_row(row) for row in page.items],
            next_cursor=page.next_cursor,
        )


@router.get(
    "/fee-schedules/{schedule_id}",
    summary="Get one fee schedule.",
    responses=problem_responses(400, 404),
)
async def get_fee_schedule(
    schedule_id: str, principal: Reader, unit_of_work: Work
) -> FeeScheduleResponse:
    parsed = parse_id(SCHEDULE_ID_PREFIX, schedule_id)
    async with unit_of_work.read() as session:
        row = await service.get_schedule(
            session, tenant_id=principal.ledger_tenant_id, schedule_id=parsed
        )
        return FeeScheduleResponse.from_row(row)


@router.put(
    "/fee-schedules/{schedule_id}",
    summary="Replace a schedule's rules (new version).",
    responses=problem_responses(400, 404, 409, 413, 422),
)
async def replace_fee_schedule(
    schedule_id: str, body: FeeScheduleReplaceRequest, principal: Writer, unit_of_work: Work
) -> FeeScheduleResponse:
    parsed = parse_id(SCHEDULE_ID_PREFIX, schedule_id)
    async with unit_of_work.begin() as session:
        row = await service.replace_schedule(
            session,
            tenant_id=principal.ledger_tenant_id,
            schedule_id=parsed,
            name=body.name,
            schedule=body.schedule(),
            expected_version=body.version,
            now_ns=_clock.now_ns(),
        )
        return FeeScheduleResponse.from_row(row)


@router.post(
    "/fee-quotes",
    summary="Preview the fees a movement would pay; changes nothing.",
    responses=problem_responses(400, 404, 413, 422),
)
async def quote_fees(
    body: FeeQuoteRequest, principal: Reader, unit_of_work: Work
) -> FeeQuoteResponse:
    # A preview prices only what could move: the currencies wallets hold, refused with the
    # wallet routes' own check (422 `unsupported_currency`, `XXX` included).
    currency_exponent(body.currency)
    context = FeeContext(
        tenant_id=principal.ledger_tenant_id,
        merchant_id=None
        if body.merchant_id is None
        else parse_id(MERCHANT_ID_PREFIX, body.merchant_id),
        method=body.method,
        currency=body.currency,
        amount_minor=int(body.amount),
        region=body.region,
        monthly_volume_minor=int(body.monthly_volume),
    )
    async with unit_of_work.read() as session:
        await _require_merchant(session, principal, context.merchant_id)
        quote = await service.quote(session, context)
    return FeeQuoteResponse.from_quote(quote, currency=body.currency)

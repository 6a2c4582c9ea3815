"""FX over HTTP: rates, quotes, conversions and the tenant's spread.

Every route is scoped to the caller's `Principal.ledger_tenant_id` (tenant and mode):
another tenant's or mode's quote is a 404, exactly like one that does not exist, and a
conversion can only touch the caller's own ledger accounts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response

from billfold.fx import service
from billfold.fx.models import FxTenantSettingsRow
from billfold.fx.rates import RatesSource, rates_source_from_settings
from billfold.fx.review import Caller, convert_decided
from billfold.fx.schemas import (
    ACCOUNT_ID_PREFIX,
    QUOTE_ID_PREFIX,
    ConversionRequest,
    ConversionResponse,
    FxSettingsRequest,
    FxSettingsResponse,
    QuotePage,
    QuoteRequest,
    QuoteResponse,
    RatesResponse,
)
from billfold.fx.service import FxConfig
from billfold.kit.auth import Principal, require_scopes
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX, clamp_page_size
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.router import get_ledger
from billfold.risk.gate import request_context
from billfold.risk.types import RiskDecider

__all__ = ["FX_READ", "FX_WRITE", "install_fx", "router"]

FX_READ = "fx:read"
FX_WRITE = "fx:write"
TENANT_ADMIN = "tenant:admin"

router = APIRouter(prefix="/v1/fx", tags=["fx"], responses=problem_responses(401, 403, 429))
Reader = Annotated[Principal, Depends(require_scopes(FX_READ))]
Writer = Annotated[Principal, Depends(require_scopes(FX_WRITE))]
Admin = Annotated[Principal, Depends(require_scopes(TENANT_ADMIN))]


def install_fx(app: FastAPI, settings: Settings, *, rates: RatesSource | None = None) -> None:
    """Give `app` its rates source (the settings' file unless given) and FX settings."""
    app.state.fx_rates = rates or rates_source_from_settings(settings)
    app.state.fx_config = FxConfig.from_settings(settings)


def _state(request: Request, name: str) -> object:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise InvariantViolation(f"install_fx sets app.state.{name}")
    return value


def get_unit_of_work(request: Request) -> UnitOfWork:
    unit_of_work = _state(request, "unit_of_work")
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


def get_rates(request: Request) -> RatesSource:
    return _state(request, "fx_rates")  # type: ignore[return-value]


def get_config(request: Request) -> FxConfig:
    config = _state(request, "fx_config")
    if not isinstance(config, FxConfig):
        raise InvariantViolation("install_fx sets app.state.fx_config")
    return config


def get_clock(request: Request) -> Clock:
    clock = getattr(request.app.state, "fx_clock", None)
    return clock if clock is not None else _SYSTEM_CLOCK


_SYSTEM_CLOCK = SystemClock()
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Rates = Annotated[RatesSource, Depends(get_rates)]
Config = Annotated[FxConfig, Depends(get_config)]
Clocks = Annotated[Clock, Depends(get_clock)]
Ledgers = Annotated[Ledger, Depends(get_ledger)]


@router.get(
    "/rates",
    summary="The reference rates quotes are made from (per 1 EUR).",
    responses=problem_responses(503),
)
async def get_rates_table(principal: Reader, rates: Rates) -> RatesResponse:
    return RatesResponse.from_table(rates.current())


@router.post(
    "/quotes",
    status_code=201,
    summary="Lock a rate for one conversion.",
    responses=problem_responses(413, 422, 503),
)
async def create_quote(
    body: QuoteRequest,
    principal: Writer,
    unit_of_work: Work,
    rates: Rates,
    config: Config,
    clock: Clocks,
) -> QuoteResponse:
    fixed, amount_minor = body.fixed()
    now_ns = clock.now_ns()
    async with unit_of_work.begin() as session:
        row = await service.create_quote(
            session,
            tenant_id=principal.ledger_tenant_id,
            rates=rates,
            config=config,
            sell_currency=body.sell_currency,
            buy_currency=body.buy_currency,
            fixed=fixed,
            amount_minor=amount_minor,
            now_ns=now_ns,
        )
    return QuoteResponse.from_row(row, now_ns=now_ns)


@router.get(
    "/quotes",
    summary="List your quotes, oldest first.",
    responses=problem_responses(400, 422),
)
async def list_quotes(
    principal: Reader,
    unit_of_work: Work,
    clock: Clocks,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> QuotePage:
    now_ns = clock.now_ns()
    async with unit_of_work.read() as session:
        page = await service.list_quotes(
            session,
            tenant_id=principal.ledger_tenant_id,
            cursor=cursor,
            limit=clamp_page_size(limit),
        )
    return QuotePage(
        items=[QuoteResponse.from_row(row, now_ns=now_ns) for row in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/quotes/{quote_id}",
    summary="Get one quote and whether it is open, expired or used.",
    responses=problem_responses(400, 404),
)
async def get_quote(
    quote_id: str, principal: Reader, unit_of_work: Work, clock: Clocks
) -> QuoteResponse:
    parsed = parse_id(QUOTE_ID_PREFIX, quote_id)
    async with unit_of_work.read() as session:
        row = await service.get_quote(
            session, tenant_id=principal.ledger_tenant_id, quote_id=parsed
        )
    return QuoteResponse.from_row(row, now_ns=clock.now_ns())


def get_risk(request: Request) -> RiskDecider | None:
    """The risk engine (`app.state.risk`, set by ``install_risk``); None: no engine
    configured, every conversion is allowed and no decision is stored."""
    decider: RiskDecider | None = getattr(request.app.state, "risk", None)
    return decider


def get_review_hold_s(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "risk_review_hold_s", _REVIEW_HOLD_S_DEFAULT))


_REVIEW_HOLD_S_DEFAULT = 3 * 86_400
Risk = Annotated[RiskDecider | None, Depends(get_risk)]


@router.post(
    "/conversions",
    summary="Use a quote: convert between one owner's two accounts.",
    responses={
        **problem_responses(400, 404, 409, 413, 422, 503),
        202: {
            "description": "Held for risk review: both legs are pending (`state` in_review)"
            " until an analyst approves (posted) or rejects them (voided)."
        },
    },
)
async def create_conversion(
    body: ConversionRequest,
    principal: Writer,
    unit_of_work: Work,
    ledger: Ledgers,
    clock: Clocks,
    risk: Risk,
    request: Request,
    response: Response,
) -> ConversionResponse:
    quote_id = parse_id(QUOTE_ID_PREFIX, body.quote_id)
    sell_account_id = parse_id(ACCOUNT_ID_PREFIX, body.sell_account_id)
    buy_account_id = parse_id(ACCOUNT_ID_PREFIX, body.buy_account_id)
    now_ns = clock.now_ns()
    decided = await convert_decided(
        unit_of_work,
        ledger,
        risk,
        caller=Caller(
            tenant_id=principal.tenant_id,
            mode=principal.mode.value,
            ledger_tenant_id=principal.ledger_tenant_id,
        ),
        quote_id=quote_id,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
        now_ns=now_ns,
        context=request_context(request),
        hold_s=get_review_hold_s(request),
    )
    if decided.held:
        response.status_code = 202
    return ConversionResponse.from_decided(decided, now_ns=now_ns)


@router.get("/settings", summary="Your FX spread and quote lifetime.")
async def get_settings(principal: Reader, unit_of_work: Work, config: Config) -> FxSettingsResponse:
    async with unit_of_work.read() as session:
        row = await session.get(FxTenantSettingsRow, principal.ledger_tenant_id)
    return FxSettingsResponse.build(
        row, default_spread_bps=config.spread_bps_default, quote_ttl_s=config.quote_ttl_s
    )


@router.put(
    "/settings",
    summary="Set your FX spread (tenant:admin).",
    responses=problem_responses(413, 422),
)
async def put_settings(
    body: FxSettingsRequest, principal: Admin, unit_of_work: Work, config: Config, clock: Clocks
) -> FxSettingsResponse:
    async with unit_of_work.begin() as session:
        row = await service.set_spread(
            session,
            tenant_id=principal.ledger_tenant_id,
            spread_bps=body.spread_bps,
            now_ns=clock.now_ns(),
        )
    return FxSettingsResponse.build(
        row, default_spread_bps=config.spread_bps_default, quote_ttl_s=config.quote_ttl_s
    )

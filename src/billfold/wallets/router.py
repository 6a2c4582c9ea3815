"""Wallets over HTTP: holders' wallets and balances, merchants, the chart of accounts,
holders' limits and the tenant's tier limits."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from billfold.identity.auth import get_unit_of_work
from billfold.identity.schemas import datetime_from_ns
from billfold.identity.users.auth import authenticate_user
from billfold.identity.users.repository import UserRepository
from billfold.identity.users.types import UserPrincipal
from billfold.kit.auth import Principal, require_scopes
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id, parse_id
from billfold.ledger.ledger import Ledger
from billfold.wallets.accounts import OwnerKind, chart_of_accounts
from billfold.wallets.errors import HolderNotFound, MerchantNotFound
from billfold.wallets.limits import TIER_LIMITS
from billfold.wallets.models import Merchant, Wallet
from billfold.wallets.overrides import holder_limits
from billfold.wallets.repository import WalletRepository
from billfold.wallets.schemas import (
    CURRENCY_PATTERN,
    HolderLimitsResponse,
    HolderTierRequest,
    HolderTierResponse,
    LimitOverrideResponse,
    LimitResponse,
    MerchantCreateRequest,
    MerchantResponse,
    SystemAccountResponse,
    SystemAccountsResponse,
    TierDefaultResponse,
    TierLimitResponse,
    TierLimitsResponse,
    WalletResponse,
    WalletsResponse,
)
from billfold.wallets.service import WalletBook, balances_of, currency_exponent, ledger_tenant_of
from billfold.wallets.tier_limits import TierFiguresInForce, tier_limits_in_force

__all__ = ["get_wallet_book", "merchant_response", "router"]

router = APIRouter(prefix="/v1", tags=["wallets"])
WalletReader = Annotated[Principal, Depends(require_scopes("wallets:read"))]
PaymentsReader = Annotated[Principal, Depends(require_scopes("payments:read"))]
PaymentsWriter = Annotated[Principal, Depends(require_scopes("payments:write"))]
UsersAdmin = Annotated[Principal, Depends(require_scopes("users:admin"))]
EndUser = Annotated[UserPrincipal, Depends(authenticate_user)]


def get_wallet_book(request: Request) -> WalletBook:
    book = getattr(request.app.state, "wallet_book", None)
    if not isinstance(book, WalletBook):
        raise InvariantViolation("the app lifespan sets up app.state.wallet_book")
    return book


def merchant_response(merchant: Merchant) -> MerchantResponse:
    return MerchantResponse(
        id=format_id("mer", merchant.id),
        legal_name=merchant.legal_name,
        category_code=merchant.category_code,
        settlement_currency=merchant.settlement_currency,
        fee_schedule=merchant.fee_schedule,
        mode=merchant.mode,
    )


async def _wallets(
    request: Request, *, tenant_id: uuid.UUID, mode: str, kind: OwnerKind, owner_id: uuid.UUID
) -> WalletsResponse:
    async with get_unit_of_work(request).read() as session:
        wallets = await WalletRepository(session).owner_wallets(
            tenant_id=tenant_id, mode=mode, owner_kind=kind.value, owner_id=owner_id
        )
    return await _with_balances(get_wallet_book(request).ledger, tenant_id, mode, wallets)


async def _with_balances(
    ledger: Ledger, tenant_id: uuid.UUID, mode: str, wallets: list[Wallet]
) -> WalletsResponse:
    accounts = await ledger.lookup_accounts(
        tenant_id=ledger_tenant_of(tenant_id, mode), ids=[wallet.id for wallet in wallets]
    )
    by_id = {account.id: account for account in accounts}
    items = []
    for wallet in wallets:
        balances = balances_of(by_id[wallet.id])
        prefix = "usr" if wallet.owner_kind == OwnerKind.USER.value else "mer"
        items.append(
            WalletResponse(
                id=format_id("wal", wallet.id),
                owner=format_id(prefix, wallet.owner_id),
                currency=wallet.currency,
                available=str(balances.available),
                pending=str(balances.pending),
                held=str(balances.held),
            )
        )
    return WalletsResponse(items=items)


@router.get("/me/wallets", summary="The signed-in user's wallets and balances.")
async def my_wallets(request: Request, user: EndUser) -> WalletsResponse:
    return await _wallets(
        request,
        tenant_id=user.tenant_id,
        mode=user.mode.value,
        kind=OwnerKind.USER,
        owner_id=user.user_id,
    )


@router.get("/users/{user_id}/wallets", summary="An end user's wallets and balances.")
async def user_wallets(request: Request, user_id: str, caller: WalletReader) -> WalletsResponse:
    owner = parse_id("usr", user_id)
    async with get_unit_of_work(request).read() as session:
        user = await UserRepository(session).get_for_tenant(
            tenant_id=caller.tenant_id, mode=caller.mode, user_id=owner
        )
    if user is None:
        raise HolderNotFound("No such user.")
    return await _wallets(
        request,
        tenant_id=caller.tenant_id,
        mode=caller.mode.value,
        kind=OwnerKind.USER,
        owner_id=owner,
    )


@router.post("/merchants", status_code=201, summary="Onboard a merchant.")
async def create_merchant(
    request: Request, body: MerchantCreateRequest, caller: PaymentsWriter
) -> MerchantResponse:
    currency_exponent(body.settlement_currency)
    merchant = Merchant(
        id=new_id(),
        tenant_id=caller.tenant_id,
        mode=caller.mode.value,
        legal_name=body.legal_name,
        category_code=body.category_code,
        settlement_currency=body.settlement_currency,
        fee_schedule=body.fee_schedule,
        split_rule_id=None,
        created_at=time.time_ns(),
    )
    # The wallet first, the merchant last: a failure opening the wallet stores nothing, so a
    # retry after a 5xx makes one merchant, not a second (an opened wallet never used is empty).
    await get_wallet_book(request).open_wallet(
        tenant_id=caller.tenant_id,
        mode=caller.mode,
        owner_kind=OwnerKind.MERCHANT,
        owner_id=merchant.id,
        currency=merchant.settlement_currency,
    )
    async with get_unit_of_work(request).begin() as session:
        await WalletRepository(session).add_merchant(merchant)
    return merchant_response(merchant)


async def _merchant(request: Request, caller: Principal, merchant_id: str) -> Merchant:
    wanted = parse_id("mer", merchant_id)
    async with get_unit_of_work(request).begin() as session:
        merchant = await WalletRepository(session).get_merchant(
            tenant_id=caller.tenant_id, mode=caller.mode.value, merchant_id=wanted
        )
    if merchant is None:
        raise MerchantNotFound("No such merchant.")
    return merchant


@router.get("/merchants/{merchant_id}", summary="One merchant.")
async def get_merchant(
    request: Request, merchant_id: str, caller: PaymentsReader
) -> MerchantResponse:
    return merchant_response(await _merchant(request, caller, merchant_id))


@router.get("/merchants/{merchant_id}/wallets", summary="A merchant's wallets and balances.")
async def merchant_wallets(
    request: Request, merchant_id: str, caller: WalletReader
) -> WalletsResponse:
    merchant = await _merchant(request, caller, merchant_id)
    return await _wallets(
        request,
        tenant_id=caller.tenant_id,
        mode=caller.mode.value,
        kind=OwnerKind.MERCHANT,
        owner_id=merchant.id,
    )


@router.get("/system-accounts", summary="The tenant's chart of system accounts in a currency.")
async def system_accounts(
    request: Request,
    caller: WalletReader,
    currency: Annotated[str, Query(pattern=CURRENCY_PATTERN)],
) -> SystemAccountsResponse:
    book = get_wallet_book(request)
    await book.ensure_chart(tenant_id=caller.tenant_id, mode=caller.mode, currency=currency)
    chart = chart_of_accounts(caller.ledger_tenant_id, currency)
    accounts = await book.ledger.lookup_accounts(
        tenant_id=caller.ledger_tenant_id, ids=[entry.account.id for entry in chart]
    )
    by_id = {account.id: account for account in accounts}
    items = [
        SystemAccountResponse(
            name=entry.name,
            account_id=format_id("acc", entry.account.id),
            code=entry.account.code,
            debits_posted=str(by_id[entry.account.id].debits_posted),
            credits_posted=str(by_id[entry.account.id].credits_posted),
            debits_pending=str(by_id[entry.account.id].debits_pending),
            credits_pending=str(by_id[entry.account.id].credits_pending),
        )
        for entry in chart
    ]
    return SystemAccountsResponse(currency=currency, items=items)


@router.put("/users/{user_id}/kyc-tier", summary="Set an end user's KYC tier (0-3).")
async def set_kyc_tier(
    request: Request, user_id: str, body: HolderTierRequest, caller: UsersAdmin
) -> HolderTierResponse:
    owner = parse_id("usr", user_id)
    async with get_unit_of_work(request).begin() as session:
        user = await UserRepository(session).get_for_tenant(
            tenant_id=caller.tenant_id, mode=caller.mode, user_id=owner
        )
        if user is None:
            raise HolderNotFound("No such user.")
        await WalletRepository(session).set_tier(
            tenant_id=caller.tenant_id, user_id=owner, tier=body.tier, now_ns=time.time_ns()
        )
    return HolderTierResponse(user_id=user_id, tier=body.tier)


@router.get(
    "/users/{user_id}/limits",
    summary="An end user's spending limits in a currency, and where each comes from.",
)
async def user_limits(
    request: Request,
    user_id: str,
    caller: WalletReader,
    currency: Annotated[str, Query(pattern=CURRENCY_PATTERN)],
) -> HolderLimitsResponse:
    """Per window (per transaction, daily, monthly): the limit in force, the KYC tier's
    figure, and the approved limit increase (four-eyes `limit_increase`) that raises it."""
    owner = parse_id("usr", user_id)
    async with get_unit_of_work(request).read() as session:
        user = await UserRepository(session).get_for_tenant(
            tenant_id=caller.tenant_id, mode=caller.mode, user_id=owner
        )
        if user is None:
            raise HolderNotFound("No such user.")
        found = await holder_limits(
            session,
            tenant_id=caller.tenant_id,
            mode=caller.mode,
            user_id=owner,
            currency=currency,
        )
    items = []
    for limit in found.limits:
        row = found.overrides.get(limit.window)
        override = (
            None
            if row is None
            else LimitOverrideResponse(
                amount=str(row.amount),
                approval_id=format_id("apr", row.approval_id),
                approved_at=datetime_from_ns(row.approved_at),
            )
        )
        items.append(
            LimitResponse(
                window=limit.window,
                limit=str(limit.limit_minor),
                source=limit.source,
                tier_limit=str(limit.tier_minor),
                tier_source=limit.tier_source,
                override=override,
                reduction_bps=limit.reduction_bps,
            )
        )
    return HolderLimitsResponse(
        user_id=format_id("usr", owner), currency=currency, tier=found.tier, limits=items
    )


@router.get(
    "/tier-limits",
    summary="The tenant's spending limits by KYC tier in this mode: its own and the defaults.",
)
async def tier_limits(
    request: Request,
    caller: WalletReader,
    currency: Annotated[str | None, Query(pattern=CURRENCY_PATTERN)] = None,
) -> TierLimitsResponse:
    """The limits every holder of a tier has before their own overrides and risk
    reductions. With `currency`: each tier's in it, the tenant's own figures where it set
    some (four-eyes `tier_limits_change`, `POST /v1/approvals`), else the default table's
    scaled to the currency. Without: the tenant's own figures in force, and the default
    table in whole units."""
    async with get_unit_of_work(request).read() as session:
        found = await tier_limits_in_force(
            session, tenant_id=caller.tenant_id, mode=caller.mode, currency=currency
        )
    items = [_tier_limit_response(entry) for entry in found]
    defaults = [
        TierDefaultResponse(
            tier=tier,
            per_transaction_units=str(row.per_transaction_units),
            daily_units=str(row.daily_units),
            monthly_units=str(row.monthly_units),
        )
        for tier, row in sorted(TIER_LIMITS.items())
    ]
    return TierLimitsResponse(
        mode="live" if caller.mode.value == "live" else "test",
        currency=currency,
        items=items,
        defaults=defaults,
    )


def _tier_limit_response(entry: TierFiguresInForce) -> TierLimitResponse:
    per_transaction, daily, monthly = entry.figures
    change = entry.change
    return TierLimitResponse(
        tier=entry.tier,
        currency=entry.currency,
        per_transaction=str(per_transaction),
        daily=str(daily),
        monthly=str(monthly),
        source=entry.source,
        approval_id=None if change is None else format_id("apr", change.approval_id),
        approved_at=None if change is None else datetime_from_ns(change.approved_at),
    )

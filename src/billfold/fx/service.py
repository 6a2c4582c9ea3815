"""FX decisions: quoting, per-tenant spreads, and converting between one owner's accounts.

Quotes, settings and conversions belong to a ledger tenant (`Principal.ledger_tenant_id`:
the tenant in one mode), the same id the ledger scopes accounts by.

**Conversion** (:func:`convert`) moves money through the tenant's FX position accounts as
one linked chain in the ledger::

    sell account  --sell_amount-->  FX position (sell currency)      [linked]
    FX position (buy currency)  --buy_amount-->  buy account

The quote is claimed (`claimed_at` with the two accounts, its row locked) before either
leg is written, marked used once both are in the ledger, and given back if the ledger
refuses the chain, so of several users of one quote (conversions, payments) only one moves
money. Both transfers' ids derive from the quote id, so nothing is ever recorded twice, and
the ledger is the truth a claim is settled by: a conversion interrupted after its claim (a
crash, a lost connection) is finished by a retry between the same accounts, with or
without its Idempotency-Key; another conversion is refused while the claim's lease
(:data:`CLAIM_LEASE_S`) runs; past it, :func:`recover_claims` (or the next use of the
quote) completes the conversion if its legs landed, else gives the quote back.

The position accounts are the tenant's chart account ``fx_position`` per currency (code
3002, no balance limit; :mod:`billfold.fx.positions` defines them and wallets' chart uses
that definition), opened on first use from either side with the same deterministic ids.
Per currency the ledger stays zero-sum: what the customers sold sits as a credit on the
position account, what they bought as a debit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.fx import pricing
from billfold.fx.errors import (
    FxConversionRefused,
    FxInsufficientFunds,
    FxInvalidAccounts,
    FxQuoteAlreadyUsed,
    FxQuoteExpired,
    FxQuoteNotFound,
    FxSameCurrency,
)
from billfold.fx.models import FxQuoteRow, FxTenantSettingsRow
from billfold.fx.positions import (
    FX_NAMESPACE,
    FX_POSITION_ACCOUNT_CODE,
    POSITION_ACCOUNT_CODES,
    position_account,
    position_account_id,
)
from billfold.fx.rates import RatesSource, UnknownCurrencyPair
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.ids import new_id
from billfold.kit.money import AssetKind, AssetRegistry, default_registry
from billfold.kit.pagination import Page, decode_id_cursor, encode_cursor
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    Account,
    CreateAccountStatus,
    CreateTransferStatus,
    NewTransfer,
    TransferFlags,
)

__all__ = [
    "CLAIM_LEASE_S",
    "FX_CONVERSION_TRANSFER_CODE",
    "FX_NAMESPACE",
    "FX_POSITION_ACCOUNT_CODE",
    "Conversion",
    "FxConfig",
    "conversion_legs",
    "conversion_transfer_ids",
    "convert",
    "create_quote",
    "ensure_positions",
    "get_quote",
    "list_quotes",
    "pay_across_currencies",
    "position_account_id",
    "recover_claim",
    "recover_claims",
    "release_quote",
    "reserve_quote",
    "set_spread",
    "spread_for",
]

FX_CONVERSION_TRANSFER_CODE: Final = 9101
CLAIM_LEASE_S: Final = 60
"""How long a conversion's claim on its quote belongs to the attempt that made it (as long
as an Idempotency-Key's default lease): past it the attempt is presumed gone, and recovery,
or the next use of the quote, completes the conversion (its legs are in the ledger) or gives
the quote back (they are not)."""
RECOVERY_BATCH_MAX: Final = 500
_REGISTRY: Final = default_registry()


@dataclass(frozen=True, slots=True)
class FxConfig:
    spread_bps_default: int
    quote_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FxConfig:
        return cls(
            spread_bps_default=settings.fx_spread_bps_default,
            quote_ttl_s=settings.fx_quote_ttl_s,
        )


@dataclass(frozen=True, slots=True)
class Conversion:
    quote: FxQuoteRow
    sell_transfer_id: uuid.UUID
    buy_transfer_id: uuid.UUID


def conversion_transfer_ids(quote_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The (sell leg, buy leg) transfer ids of the conversion that uses `quote_id`."""
    return uuid.uuid5(FX_NAMESPACE, f"{quote_id}:sell"), uuid.uuid5(FX_NAMESPACE, f"{quote_id}:buy")


def _fiat_exponent(code: str, registry: AssetRegistry) -> int:
    if code not in registry or registry.get(code).kind is not AssetKind.FIAT:
        raise UnknownCurrencyPair("FX converts ISO 4217 currencies.", currency=code)
    return registry.get(code).exponent


def _plain(rate: Decimal) -> str:
    """A rate as a plain decimal, as rates are read (`str` would write one below 10^-6,
    such as a rial in euros, in exponent notation: `9.04545454545E-7`)."""
    return format(rate, "f")


async def spread_for(session: AsyncSession, *, tenant_id: uuid.UUID, config: FxConfig) -> int:
    row = await session.get(FxTenantSettingsRow, tenant_id)
    return config.spread_bps_default if row is None else row.spread_bps


async def set_spread(
    session: AsyncSession, *, tenant_id: uuid.UUID, spread_bps: int, now_ns: int
) -> FxTenantSettingsRow:
    invariant(0 <= spread_bps <= pricing.SPREAD_BPS_MAX, "spread within bounds")
    row = await session.get(FxTenantSettingsRow, tenant_id, with_for_update=True)
    if row is None:
        row = FxTenantSettingsRow(tenant_id=tenant_id, spread_bps=spread_bps, updated_at=now_ns)
        session.add(row)
    else:
        row.spread_bps, row.updated_at = spread_bps, now_ns
    await session.flush()
    return row


async def create_quote(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    rates: RatesSource,
    config: FxConfig,
    sell_currency: str,
    buy_currency: str,
    fixed: Literal["sell", "buy"],
    amount_minor: int,
    now_ns: int,
) -> FxQuoteRow:
    """Lock the current rate less the tenant's spread for `config.quote_ttl_s`."""
    if sell_currency == buy_currency:
        raise FxSameCurrency("Sell and buy currencies must differ.")
    sell_exponent = _fiat_exponent(sell_currency, _REGISTRY)
    buy_exponent = _fiat_exponent(buy_currency, _REGISTRY)
    table = rates.current()
    mid = table.cross(sell=sell_currency, buy=buy_currency)
    spread_bps = await spread_for(session, tenant_id=tenant_id, config=config)
    priced = pricing.price(
        mid=mid,
        spread_bps=spread_bps,
        fixed=fixed,
        amount_minor=amount_minor,
        sell_exponent=sell_exponent,
        buy_exponent=buy_exponent,
    )
    row = FxQuoteRow(
        id=new_id(),
        tenant_id=tenant_id,
        sell_currency=sell_currency,
        buy_currency=buy_currency,
        sell_amount=priced.sell_minor,
        buy_amount=priced.buy_minor,
        fixed_side=fixed,
        mid_rate=_plain(pricing.round_down_significant(mid, pricing.RATE_SIGNIFICANT_DIGITS)),
        rate=_plain(priced.rate),
        spread_bps=spread_bps,
        rates_date=table.date.isoformat(),
        created_at=now_ns,
        expires_at=now_ns + config.quote_ttl_s * NANOSECONDS_PER_SECOND,
        used_at=None,
        sell_account_id=None,
        buy_account_id=None,
    )
    session.add(row)
    await session.flush()
    return row


async def get_quote(
    session: AsyncSession, *, tenant_id: uuid.UUID, quote_id: uuid.UUID, for_update: bool = False
) -> FxQuoteRow:
    statement = select(FxQuoteRow).where(
        FxQuoteRow.id == quote_id, FxQuoteRow.tenant_id == tenant_id
    )
    if for_update:
        # The row as locked, even when this session read it before (its identity map
        # would otherwise keep the older, unlocked values: a quote used meanwhile would
        # look unused).
        statement = statement.with_for_update().execution_options(populate_existing=True)
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        raise FxQuoteNotFound()
    return row


async def list_quotes(
    session: AsyncSession, *, tenant_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[FxQuoteRow]:
    statement = select(FxQuoteRow).where(FxQuoteRow.tenant_id == tenant_id)
    if cursor is not None:
        statement = statement.where(FxQuoteRow.id > decode_id_cursor(cursor))
    statement = statement.order_by(FxQuoteRow.id).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=encode_cursor([rows[-1].id.hex]) if more else None)


def _check_accounts(
    quote: FxQuoteRow,
    accounts: list[Account],
    *,
    sell_id: uuid.UUID,
    buy_id: uuid.UUID,
    same_owner: bool,
) -> None:
    found = {account.id: account for account in accounts}
    sell, buy = found.get(sell_id), found.get(buy_id)
    if sell is None or buy is None:
        raise FxInvalidAccounts("Both accounts must exist in your ledger.")
    if sell_id == buy_id:
        raise FxInvalidAccounts("The sell and buy accounts must differ.")
    if sell.code in POSITION_ACCOUNT_CODES or buy.code in POSITION_ACCOUNT_CODES:
        raise FxInvalidAccounts("FX position accounts cannot be converted from or to.")
    if sell.ledger != quote.sell_currency or buy.ledger != quote.buy_currency:
        raise FxInvalidAccounts(
            f"The sell account holds {quote.sell_currency} and the buy account"
            f" {quote.buy_currency}, as the quote says."
        )
    if same_owner and (sell.owner_ref is None or sell.owner_ref != buy.owner_ref):
        raise FxInvalidAccounts("Both accounts must have the same owner.")


async def _ensure_positions(ledger: Ledger, quote: FxQuoteRow) -> tuple[uuid.UUID, uuid.UUID]:
    accounts = [
        position_account(tenant_id=quote.tenant_id, currency=currency)
        for currency in (quote.sell_currency, quote.buy_currency)
    ]
    for result in await ledger.create_accounts(accounts):
        invariant(
            result.status in (CreateAccountStatus.OK, CreateAccountStatus.EXISTS),
            f"FX position account refused: {result.status}",
        )
    return accounts[0].id, accounts[1].id


def _legs(
    quote: FxQuoteRow, *, sell_account_id: uuid.UUID, buy_account_id: uuid.UUID
) -> list[NewTransfer]:
    sell_leg_id, buy_leg_id = conversion_transfer_ids(quote.id)
    sell_position = position_account_id(tenant_id=quote.tenant_id, currency=quote.sell_currency)
    buy_position = position_account_id(tenant_id=quote.tenant_id, currency=quote.buy_currency)
    reference = f"fxq_{quote.id.hex}"
    return [
        NewTransfer(
            id=sell_leg_id,
            tenant_id=quote.tenant_id,
            debit_account_id=sell_account_id,
            credit_account_id=sell_position,
            amount=quote.sell_amount,
            ledger=quote.sell_currency,
            code=FX_CONVERSION_TRANSFER_CODE,
            flags=TransferFlags.LINKED,
            user_data=reference,
        ),
        NewTransfer(
            id=buy_leg_id,
            tenant_id=quote.tenant_id,
            debit_account_id=buy_position,
            credit_account_id=buy_account_id,
            amount=quote.buy_amount,
            ledger=quote.buy_currency,
            code=FX_CONVERSION_TRANSFER_CODE,
            user_data=reference,
        ),
    ]


_REFUSED_AS_USED = {CreateTransferStatus.EXISTS_WITH_DIFFERENT_FIELDS}
_INSUFFICIENT = {CreateTransferStatus.EXCEEDS_CREDITS, CreateTransferStatus.EXCEEDS_DEBITS}


async def _submit_legs(ledger: Ledger, legs: list[NewTransfer]) -> None:
    results = await ledger.submit(legs)
    done = (CreateTransferStatus.OK, CreateTransferStatus.EXISTS)
    if all(result.status in done for result in results):
        return
    # In a failed chain the failing transfer has its own status, the others linked_event_failed.
    failure = next(
        (r.status for r in results if r.status is not CreateTransferStatus.LINKED_EVENT_FAILED),
        CreateTransferStatus.LINKED_EVENT_FAILED,
    )
    if failure in _REFUSED_AS_USED:
        raise FxQuoteAlreadyUsed("This quote converted between other accounts.")
    if failure in _INSUFFICIENT:
        raise FxInsufficientFunds("The sell account lacks the funds.", ledger_status=failure.value)
    raise FxConversionRefused(f"The ledger refused: {failure.value}.", ledger_status=failure.value)


async def convert(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
) -> Conversion:
    """Convert with `quote_id` from `sell_account_id` to `buy_account_id` (one owner's).

    Takes the unit of work rather than a session because the ledger writes through its own
    connection: the quote is claimed in one short unit of work, then the legs are applied
    (on SQLite a unit of work holds the database's write lock, so the ledger could not
    write while one is open), and the quote given back in another if the ledger refused
    them. Legs an earlier attempt landed without marking the quote are completed (their
    ids come from the quote id); a claim an attempt left is finished by a retry between the
    same accounts, and settled by recovery past its lease (see the module).
    """
    return await _use_quote(
        unit_of_work,
        ledger,
        tenant_id=tenant_id,
        quote_id=quote_id,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
        now_ns=now_ns,
        same_owner=True,
    )


async def pay_across_currencies(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    payer_account_id: uuid.UUID,
    payee_account_id: uuid.UUID,
    now_ns: int,
) -> Conversion:
    """Cross-currency P2P or payment: the payer's sell-currency account pays the quote's
    sell amount, the payee's buy-currency account receives its buy amount, through the FX
    positions in one linked chain. The same rules as :func:`convert` (expiry, single use,
    retries, funds), except that the two accounts may have different owners."""
    return await _use_quote(
        unit_of_work,
        ledger,
        tenant_id=tenant_id,
        quote_id=quote_id,
        sell_account_id=payer_account_id,
        buy_account_id=payee_account_id,
        now_ns=now_ns,
        same_owner=False,
    )


async def _use_quote(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
    same_owner: bool,
) -> Conversion:
    async with unit_of_work.begin() as session:
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id)
    if quote.used_at is not None:
        raise FxQuoteAlreadyUsed("Each quote converts once; ask for a new quote.")
    accounts = await ledger.lookup_accounts(
        tenant_id=tenant_id, ids=[sell_account_id, buy_account_id]
    )
    _check_accounts(
        quote, accounts, sell_id=sell_account_id, buy_id=buy_account_id, same_owner=same_owner
    )
    ours = (sell_account_id, buy_account_id)
    landed = await _landed(ledger, quote)
    if landed is not None:
        # An earlier attempt's legs are in the ledger (it stopped before marking the quote):
        # the quote is theirs, even past its expiry, for the conversion happened in time.
        async with unit_of_work.begin() as session:
            quote = await _complete(
                session, tenant_id=tenant_id, quote_id=quote_id, accounts=landed, now_ns=now_ns
            )
        if landed != ours:
            raise FxQuoteAlreadyUsed("This quote converted between other accounts.")
        return _conversion(quote)
    # Claimed before any leg is written: of two conversions of one quote the second is
    # refused here (or, between the same accounts, finishes the same conversion: the legs'
    # ids come from the quote, so they land once), and the quote records the accounts.
    async with unit_of_work.begin() as session:
        claimed = await _claim_for_conversion(
            session, tenant_id=tenant_id, quote_id=quote_id, accounts=ours, now_ns=now_ns
        )
    if claimed is None:
        raise FxQuoteExpired("The quote has expired; ask for a new one.")
    await _ensure_positions(ledger, claimed)
    try:
        await _submit_legs(
            ledger, _legs(claimed, sell_account_id=sell_account_id, buy_account_id=buy_account_id)
        )
    except (FxInsufficientFunds, FxConversionRefused):
        # The ledger refused the whole linked chain: none of its legs applied.
        async with unit_of_work.begin() as session:
            await _release_claim(session, tenant_id=tenant_id, quote_id=quote_id, accounts=ours)
        raise
    except FxQuoteAlreadyUsed:
        # Another conversion's legs landed first (it took the claim back after its lease
        # or held it before): the quote is theirs.
        theirs = await _landed(ledger, claimed)
        if theirs is not None:
            async with unit_of_work.begin() as session:
                await _complete(
                    session, tenant_id=tenant_id, quote_id=quote_id, accounts=theirs, now_ns=now_ns
                )
        raise
    # Any other failure (a connection lost, a timeout, a crash) leaves the claim: a retry
    # between the same accounts finishes it, recovery completes or releases it.
    async with unit_of_work.begin() as session:
        quote = await _complete(
            session, tenant_id=tenant_id, quote_id=quote_id, accounts=ours, now_ns=now_ns
        )
    return _conversion(quote)


def _conversion(quote: FxQuoteRow) -> Conversion:
    sell_leg_id, buy_leg_id = conversion_transfer_ids(quote.id)
    return Conversion(quote=quote, sell_transfer_id=sell_leg_id, buy_transfer_id=buy_leg_id)


async def _landed(ledger: Ledger, quote: FxQuoteRow) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The (sell, buy) accounts of the quote's legs if the ledger holds both (a linked
    chain lands whole or not at all), else None."""
    sell_leg_id, buy_leg_id = conversion_transfer_ids(quote.id)
    found = {
        transfer.id: transfer
        for transfer in await ledger.lookup_transfers(
            tenant_id=quote.tenant_id, ids=[sell_leg_id, buy_leg_id]
        )
    }
    sell_leg, buy_leg = found.get(sell_leg_id), found.get(buy_leg_id)
    if sell_leg is None or buy_leg is None:
        return None
    return sell_leg.debit_account_id, buy_leg.credit_account_id


def _claim_stale(quote: FxQuoteRow, now_ns: int) -> bool:
    """Whether the attempt that claimed `quote` is presumed gone (its lease is over)."""
    return quote.claimed_at is not None and (
        now_ns >= quote.claimed_at + CLAIM_LEASE_S * NANOSECONDS_PER_SECOND
    )


def _claimed_by(quote: FxQuoteRow) -> tuple[uuid.UUID, uuid.UUID] | None:
    if quote.claimed_at is None or quote.sell_account_id is None or quote.buy_account_id is None:
        return None
    return quote.sell_account_id, quote.buy_account_id


async def _claim_for_conversion(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    accounts: tuple[uuid.UUID, uuid.UUID],
    now_ns: int,
) -> FxQuoteRow | None:
    """Claim the quote for the conversion between `accounts`, its row locked (so two
    conversions cannot both claim it); None: it expired (a claim it held is given back).

    The caller found none of the quote's legs in the ledger. A claim by the same accounts
    is the same conversion (a retry, or an attempt still running): it goes on, past the
    quote's expiry too while its lease runs, for it was claimed in time. Another
    conversion's claim refuses this one until its lease is over; then its attempt is
    presumed gone without legs and the claim is given back, as recovery does."""
    quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
    if quote.used_at is not None:
        raise FxQuoteAlreadyUsed("Each quote converts once; ask for a new quote.")
    holder = _claimed_by(quote)
    if holder is not None and not _claim_stale(quote, now_ns):
        if holder != accounts:
            raise FxQuoteAlreadyUsed("Another conversion is using this quote.")
        return quote
    if now_ns >= quote.expires_at:
        _open(quote)
        await session.flush()
        return None
    quote.claimed_at = now_ns
    quote.sell_account_id, quote.buy_account_id = accounts
    await session.flush()
    return quote


def _open(quote: FxQuoteRow) -> None:
    quote.claimed_at = None
    quote.sell_account_id = quote.buy_account_id = None


async def _release_claim(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    accounts: tuple[uuid.UUID, uuid.UUID],
) -> None:
    """Give back the claim of the conversion between `accounts`, whose legs the ledger
    refused, unless the quote has moved on (used, or claimed by another) meanwhile."""
    quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
    if quote.used_at is None and _claimed_by(quote) == accounts:
        _open(quote)
        await session.flush()


async def _complete(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    accounts: tuple[uuid.UUID, uuid.UUID],
    now_ns: int,
) -> FxQuoteRow:
    """Mark the quote used by the conversion whose legs the ledger holds (between
    `accounts`): whatever its row said (claimed by these or other accounts, open), the
    ledger is the truth, and its legs' ids let no other conversion land."""
    quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
    if quote.used_at is None:
        quote.used_at = now_ns
        quote.claimed_at = None
        quote.sell_account_id, quote.buy_account_id = accounts
        await session.flush()
    return quote


async def recover_claim(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    now_ns: int,
) -> FxQuoteRow:
    """Settle a conversion's claim on `quote_id` whose lease is over (its attempt died
    after claiming): completed if its legs are in the ledger, else given back (the quote
    is open again until it expires). A claim still in its lease, or none, is left alone."""
    async with unit_of_work.begin() as session:
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id)
    claimed_at = quote.claimed_at
    if quote.used_at is not None or not _claim_stale(quote, now_ns):
        return quote
    landed = await _landed(ledger, quote)
    async with unit_of_work.begin() as session:
        if landed is not None:
            return await _complete(
                session, tenant_id=tenant_id, quote_id=quote_id, accounts=landed, now_ns=now_ns
            )
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
        if quote.used_at is None and quote.claimed_at == claimed_at:
            # Unchanged since the ledger was read: a retry that re-claimed it meanwhile
            # would have moved `claimed_at`. Legs a presumed-dead attempt still lands later
            # are recognised by whoever uses the quote next (see `_use_quote`).
            _open(quote)
            await session.flush()
        return quote


async def recover_claims(
    unit_of_work: UnitOfWork, ledger: Ledger, *, now_ns: int, limit: int = RECOVERY_BATCH_MAX
) -> int:
    """Settle (:func:`recover_claim`) up to `limit` conversion claims whose lease is over,
    oldest first, across tenants; returns how many it looked at. For a recovery loop."""
    invariant(0 < limit <= RECOVERY_BATCH_MAX, "recovery batch within bounds")
    cutoff = now_ns - CLAIM_LEASE_S * NANOSECONDS_PER_SECOND
    async with unit_of_work.read() as session:
        stale = (
            await session.execute(
                select(FxQuoteRow.tenant_id, FxQuoteRow.id)
                .where(FxQuoteRow.claimed_at.is_not(None), FxQuoteRow.claimed_at <= cutoff)
                .order_by(FxQuoteRow.claimed_at)
                .limit(limit)
            )
        ).all()
    for tenant_id, quote_id in stale:
        await recover_claim(
            unit_of_work, ledger, tenant_id=tenant_id, quote_id=quote_id, now_ns=now_ns
        )
    return len(stale)


async def _claim(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
) -> FxQuoteRow:
    """Mark an open, unexpired quote used with the accounts its legs move, its row locked
    (so two users cannot both claim it). A conversion's claim, even past its lease, is
    not taken here: recovery (or a retry) settles it first."""
    quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
    if quote.used_at is not None or quote.claimed_at is not None:
        raise FxQuoteAlreadyUsed("Each quote converts once; ask for a new quote.")
    if now_ns >= quote.expires_at:
        raise FxQuoteExpired("The quote has expired; ask for a new one.")
    quote.used_at = now_ns
    quote.sell_account_id, quote.buy_account_id = sell_account_id, buy_account_id
    await session.flush()
    return quote


# -- conversions that are part of a payment (the payment posts the legs in its own chain)


async def reserve_quote(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
) -> FxQuoteRow:
    """Claim an unused, unexpired quote for one payment, in the caller's unit of work
    (the row is locked, so two payments cannot claim it): it is marked used with the
    accounts its legs (:func:`conversion_legs`) will move. The payment posts the legs
    linked with its own transfers, and gives the quote back (:func:`release_quote`) if
    the ledger refused the whole chain."""
    return await _claim(
        session,
        tenant_id=tenant_id,
        quote_id=quote_id,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
        now_ns=now_ns,
    )


async def release_quote(
    session: AsyncSession, *, tenant_id: uuid.UUID, quote_id: uuid.UUID
) -> None:
    """Give back a reserved quote whose conversion the ledger refused (none of its legs
    applied): it may be used again until it expires."""
    quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id, for_update=True)
    quote.used_at = None
    quote.sell_account_id = quote.buy_account_id = None
    await session.flush()


async def ensure_positions(ledger: Ledger, quote: FxQuoteRow) -> None:
    """Open the quote's two FX position accounts, the chart's ``fx_position`` in each
    currency (deterministic ids; `exists` is fine)."""
    await _ensure_positions(ledger, quote)


def conversion_legs(
    quote: FxQuoteRow, *, sell_account_id: uuid.UUID, buy_account_id: uuid.UUID
) -> list[NewTransfer]:
    """The conversion's two transfers (sell account → sell position, buy position → buy
    account), with the quote-derived ids, for a caller to link into its own chain."""
    return _legs(quote, sell_account_id=sell_account_id, buy_account_id=buy_account_id)

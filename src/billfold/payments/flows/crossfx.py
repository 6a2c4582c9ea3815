"""Cross-currency payments: the payer pays from a wallet in another currency.

The payer's money is converted with a locked FX quote into their own wallet in the
payment's currency, and paid on from there, all in the payment's one linked chain::

    payer (source currency) --sell amount--> fx_position (source)        fx:sell  [linked]
    fx_position (payment currency) --buy amount--> payer (payment currency)  fx:buy  [linked]
    payer (payment currency) --> payee / hold, fees …                    the payment's steps

through the tenant's chart account ``fx_position`` in each currency (fx's
``positions.position_account``, which wallets' chart uses too), so the conversion happens if
and only if the payment does: per currency the ledger stays
zero-sum, and the payer's payment-currency wallet ends as it started (P2P: the quote buys
the amount plus the fees; merchant payments: the amount, held for the merchant).

The quote is the payer's (`quote_id`: sell = their currency, buy = the payment's, buy
amount = what the payment needs), or one made on the fly at the tenant's spread. It is
reserved in the unit of work that commits to the payment (single use, row locked), its
legs' ids derive from it (a re-driven chain answers `exists`), and it is given back when
the ledger refuses the whole chain.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.fx import service as fx
from billfold.fx.models import FxQuoteRow
from billfold.fx.service import conversion_transfer_ids
from billfold.kit.ids import format_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import FxQuoteMismatch
from billfold.payments.runtime import PaymentsRuntime

__all__ = [
    "FX_STEPS",
    "CrossCurrency",
    "fx_steps",
    "leg_ids",
    "legs_recorded",
    "lock_quote",
    "release",
    "reserved_quote",
    "source_currency_of",
    "wanted",
]

FX_STEPS = ("fx:sell", "fx:buy")


@dataclass(frozen=True, slots=True)
class CrossCurrency:
    """What the payer asked for: pay from `source_currency`, with `quote_id` if given."""

    source_currency: str | None
    quote_id: uuid.UUID | None


def wanted(source_currency: str | None, quote_id: uuid.UUID | None, currency: str) -> bool:
    """Whether the payer's choice makes the payment cross-currency."""
    return quote_id is not None or (source_currency is not None and source_currency != currency)


async def source_currency_of(
    session: AsyncSession, *, ledger_tenant: uuid.UUID, choice: CrossCurrency
) -> str | None:
    """The currency the payer pays from: as asked, else the quote's sell currency."""
    if choice.source_currency is not None or choice.quote_id is None:
        return choice.source_currency
    quote = await fx.get_quote(session, tenant_id=ledger_tenant, quote_id=choice.quote_id)
    return quote.sell_currency


async def lock_quote(
    session: AsyncSession,
    runtime: PaymentsRuntime,
    *,
    ledger_tenant: uuid.UUID,
    quote_id: uuid.UUID | None,
    source_currency: str,
    currency: str,
    buy_amount: int,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
) -> FxQuoteRow:
    """Reserve the payer's quote (checked against the payment) or a new one that buys
    exactly `buy_amount` of `currency` with `source_currency`."""
    if quote_id is None:
        quote = await fx.create_quote(
            session,
            tenant_id=ledger_tenant,
            rates=runtime.fx_rates,
            config=runtime.fx_config,
            sell_currency=source_currency,
            buy_currency=currency,
            fixed="buy",
            amount_minor=buy_amount,
            now_ns=now_ns,
        )
        quote_id = quote.id
    else:
        quote = await fx.get_quote(session, tenant_id=ledger_tenant, quote_id=quote_id)
        if (quote.sell_currency, quote.buy_currency, quote.buy_amount) != (
            source_currency,
            currency,
            buy_amount,
        ):
            raise FxQuoteMismatch(
                f"This payment needs a quote selling {source_currency} for exactly"
                f" {buy_amount} {currency} minor units.",
                sell_currency=source_currency,
                buy_currency=currency,
                buy_amount=str(buy_amount),
            )
    return await fx.reserve_quote(
        session,
        tenant_id=ledger_tenant,
        quote_id=quote_id,
        sell_account_id=sell_account_id,
        buy_account_id=buy_account_id,
        now_ns=now_ns,
    )


async def fx_steps(runtime: PaymentsRuntime, quote: FxQuoteRow) -> list[tuple[str, NewTransfer]]:
    """The conversion's legs as payment steps (its position accounts opened first)."""
    if quote.sell_account_id is None or quote.buy_account_id is None:
        raise FxQuoteMismatch("The quote is not reserved for this payment.")
    await fx.ensure_positions(runtime.book.ledger, quote)
    legs = fx.conversion_legs(
        quote, sell_account_id=quote.sell_account_id, buy_account_id=quote.buy_account_id
    )
    return list(zip(FX_STEPS, legs, strict=True))


async def reserved_quote(
    session: AsyncSession, *, ledger_tenant: uuid.UUID, quote_id: uuid.UUID
) -> FxQuoteRow:
    return await fx.get_quote(session, tenant_id=ledger_tenant, quote_id=quote_id)


async def release(session: AsyncSession, *, ledger_tenant: uuid.UUID, quote_id: uuid.UUID) -> None:
    """The ledger refused the chain (none of it applied): the quote may be used again."""
    await fx.release_quote(session, tenant_id=ledger_tenant, quote_id=quote_id)


async def legs_recorded(runtime: PaymentsRuntime, quote_id: uuid.UUID, tenant: uuid.UUID) -> bool:
    """Whether the ledger holds the quote's legs (then it must never be given back)."""
    found = await runtime.book.ledger.lookup_transfers(
        tenant_id=tenant, ids=list(conversion_transfer_ids(quote_id))
    )
    return bool(found)


def leg_ids(quote_id: uuid.UUID) -> tuple[str, str]:
    sell, buy = conversion_transfer_ids(quote_id)
    return format_id("txf", sell), format_id("txf", buy)

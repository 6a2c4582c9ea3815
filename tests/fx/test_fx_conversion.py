"""Conversions against a real ledger on both backends: the linked legs through FX positions,
retries, expiry, reuse, insufficient funds, wrong accounts, zero-sum books and `verify`."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from billfold.fx import positions, service
from billfold.fx.errors import (
    FxConversionRefused,
    FxInsufficientFunds,
    FxInvalidAccounts,
    FxQuoteAlreadyUsed,
    FxQuoteExpired,
    FxQuoteNotFound,
    FxSameCurrency,
)
from billfold.fx.models import FxQuoteRow
from billfold.fx.rates import RateTable, StaticRatesSource, UnknownCurrencyPair
from billfold.fx.service import FxConfig
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    AccountFlags,
    AccountStatus,
    CreateAccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
)
from billfold.wallets.accounts import AccountCode, chart_of_accounts, system_account_id

pytestmark = pytest.mark.anyio

RATES = StaticRatesSource(
    RateTable(
        date=datetime.date(2023, 12, 29),
        rates={"USD": Decimal("1.1050"), "JPY": Decimal("156.33"), "GBP": Decimal("0.86905")},
    )
)
CONFIG = FxConfig(spread_bps_default=50, quote_ttl_s=30)
NOW_NS = 1_800_000_000 * NANOSECONDS_PER_SECOND
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


@pytest.fixture
async def unit_of_work(database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


class Books:
    """One fresh ledger tenant with a customer's EUR and USD wallets, EUR funded."""

    def __init__(self, ledger: Ledger, unit_of_work: UnitOfWork) -> None:
        self.ledger, self.unit_of_work = ledger, unit_of_work
        self.tenant_id = uuid.uuid4()
        self.accounts: dict[str, uuid.UUID] = {}

    async def open(self, name: str, currency: str, *, owner: str, flags: int = WALLET) -> uuid.UUID:
        account_id = uuid.uuid4()
        [result] = await self.ledger.create_accounts(
            [
                NewAccount(
                    id=account_id,
                    tenant_id=self.tenant_id,
                    ledger=currency,
                    code=1,
                    flags=flags,
                    owner_ref=owner,
                )
            ]
        )
        assert result.status.value == "ok"
        self.accounts[name] = account_id
        return account_id

    async def fund(self, account: str, currency: str, amount: int) -> None:
        source = await self.open(
            f"bank_{currency}_{uuid.uuid4().hex[:4]}", currency, owner="bank", flags=0
        )
        [result] = await self.ledger.submit(
            [
                NewTransfer(
                    id=uuid.uuid4(),
                    tenant_id=self.tenant_id,
                    debit_account_id=source,
                    credit_account_id=self.accounts[account],
                    amount=amount,
                    ledger=currency,
                    code=1,
                )
            ]
        )
        assert result.status is CreateTransferStatus.OK

    async def quote(
        self, sell: str, buy: str, *, amount: int, fixed: str = "sell", now_ns: int = NOW_NS
    ) -> FxQuoteRow:
        async with self.unit_of_work.begin() as session:
            return await service.create_quote(
                session,
                tenant_id=self.tenant_id,
                rates=RATES,
                config=CONFIG,
                sell_currency=sell,
                buy_currency=buy,
                fixed=fixed,  # type: ignore[arg-type]
                amount_minor=amount,
                now_ns=now_ns,
            )

    async def convert(
        self,
        quote: FxQuoteRow,
        sell: str = "eur",
        buy: str = "usd",
        now_ns: int = NOW_NS + NANOSECONDS_PER_SECOND,
    ) -> service.Conversion:
        return await service.convert(
            self.unit_of_work,
            self.ledger,
            tenant_id=self.tenant_id,
            quote_id=quote.id,
            sell_account_id=self.accounts[sell],
            buy_account_id=self.accounts[buy],
            now_ns=now_ns,
        )

    async def balance(self, name: str) -> int:
        account = await self.ledger.get_account(
            tenant_id=self.tenant_id, account_id=self.accounts[name]
        )
        return account.credits_posted - account.debits_posted

    async def assert_balanced(self) -> None:
        """Per currency, every account of this tenant sums to zero; `verify` passes."""
        page = await self.ledger.list_accounts(tenant_id=self.tenant_id, limit=500)
        sums: dict[str, int] = {}
        for account in page.items:
            sums[account.ledger] = (
                sums.get(account.ledger, 0) + account.credits_posted - account.debits_posted
            )
        assert sums and all(total == 0 for total in sums.values()), sums
        report = await self.ledger.verify(grace_s=60)
        assert report.ok, report.problems


@pytest.fixture
async def books(ledger: Ledger, unit_of_work: UnitOfWork) -> Books:
    opened = Books(ledger, unit_of_work)
    await opened.open("eur", "EUR", owner="user-1")
    await opened.open("usd", "USD", owner="user-1")
    await opened.fund("eur", "EUR", 100_00)
    return opened


async def test_a_conversion_moves_both_legs_through_the_positions(books: Books) -> None:
    quote = await books.quote("EUR", "USD", amount=50_00)
    assert (quote.sell_amount, quote.buy_amount, quote.rate) == (5000, 5497, "1.09947500000")
    conversion = await books.convert(quote)
    assert conversion.quote.used_at is not None
    assert await books.balance("eur") == 50_00
    assert await books.balance("usd") == 5497
    sell_leg, buy_leg = await books.ledger.lookup_transfers(
        tenant_id=books.tenant_id, ids=[conversion.sell_transfer_id, conversion.buy_transfer_id]
    )
    eur_position = service.position_account_id(tenant_id=books.tenant_id, currency="EUR")
    usd_position = service.position_account_id(tenant_id=books.tenant_id, currency="USD")
    assert (sell_leg.debit_account_id, sell_leg.credit_account_id) == (
        books.accounts["eur"],
        eur_position,
    )
    assert (buy_leg.debit_account_id, buy_leg.credit_account_id) == (
        usd_position,
        books.accounts["usd"],
    )
    assert sell_leg.user_data == buy_leg.user_data == f"fxq_{quote.id.hex}"
    await books.assert_balanced()


async def test_a_used_quote_is_refused_and_nothing_moves_twice(books: Books) -> None:
    quote = await books.quote("EUR", "USD", amount=10_00)
    await books.convert(quote)
    with pytest.raises(FxQuoteAlreadyUsed):
        await books.convert(quote)
    assert await books.balance("eur") == 90_00
    await books.assert_balanced()


async def test_a_retry_after_the_legs_landed_completes_without_moving_again(books: Books) -> None:
    quote = await books.quote("EUR", "USD", amount=10_00)
    # A crash after the ledger write and before the quote was marked used: replay the legs.
    legs = service._legs(
        quote, sell_account_id=books.accounts["eur"], buy_account_id=books.accounts["usd"]
    )
    await service._ensure_positions(books.ledger, quote)
    assert [r.status for r in await books.ledger.submit(legs)] == [CreateTransferStatus.OK] * 2
    # Even past expiry the retry finishes the recorded conversion instead of refusing it.
    late = NOW_NS + 3600 * NANOSECONDS_PER_SECOND
    conversion = await books.convert(quote, now_ns=late)
    assert conversion.quote.used_at == late
    assert await books.balance("eur") == 90_00
    await books.assert_balanced()


async def test_an_expired_quote_is_refused(books: Books) -> None:
    quote = await books.quote("EUR", "USD", amount=10_00)
    with pytest.raises(FxQuoteExpired):
        await books.convert(quote, now_ns=quote.expires_at)
    assert await books.balance("eur") == 100_00
    await books.assert_balanced()


async def test_insufficient_funds_move_nothing_and_leave_the_quote_open(books: Books) -> None:
    quote = await books.quote("EUR", "USD", amount=100_01)
    with pytest.raises(FxInsufficientFunds):
        await books.convert(quote)
    assert await books.balance("eur") == 100_00
    assert await books.balance("usd") == 0
    async with books.unit_of_work.begin() as session:
        row = await service.get_quote(session, tenant_id=books.tenant_id, quote_id=quote.id)
        assert row.used_at is None
    await books.assert_balanced()


async def test_accounts_must_be_the_same_owners_in_the_quotes_currencies(books: Books) -> None:
    await books.open("stranger_usd", "USD", owner="user-2")
    await books.open("gbp", "GBP", owner="user-1")
    await books.open("unowned_usd", "USD", owner=None)  # type: ignore[arg-type]
    quote = await books.quote("EUR", "USD", amount=10_00)
    for sell, buy in (
        ("eur", "stranger_usd"),
        ("eur", "gbp"),
        ("usd", "eur"),
        ("eur", "eur"),
        ("eur", "unowned_usd"),
    ):
        with pytest.raises(FxInvalidAccounts):
            await books.convert(quote, sell, buy)
    books.accounts["elsewhere"] = uuid.uuid4()
    with pytest.raises(FxInvalidAccounts):
        await books.convert(quote, "eur", "elsewhere")
    assert await books.balance("eur") == 100_00
    await books.assert_balanced()


async def test_another_tenants_quote_and_accounts_are_invisible(
    books: Books, ledger: Ledger, unit_of_work: UnitOfWork
) -> None:
    quote = await books.quote("EUR", "USD", amount=10_00)
    intruder = Books(ledger, unit_of_work)
    await intruder.open("eur", "EUR", owner="user-1")
    await intruder.open("usd", "USD", owner="user-1")
    with pytest.raises(FxQuoteNotFound):
        await intruder.convert(quote)
    own = await intruder.quote("EUR", "USD", amount=10_00)
    intruder.accounts = dict(books.accounts)  # the victim's accounts with the intruder's quote
    with pytest.raises(FxInvalidAccounts):
        await intruder.convert(own)
    assert await books.balance("eur") == 100_00


async def test_cross_currency_through_the_euro_and_buy_side_quotes(books: Books) -> None:
    await books.open("jpy", "JPY", owner="user-1")
    await books.fund("usd", "USD", 200_00)
    quote = await books.quote("USD", "JPY", amount=10_000, fixed="buy")
    assert quote.buy_amount == 10_000 and quote.fixed_side == "buy"
    await books.convert(quote, "usd", "jpy")
    assert await books.balance("jpy") == 10_000
    assert await books.balance("usd") == 200_00 - quote.sell_amount
    await books.assert_balanced()


async def test_bad_quote_requests_are_refused(books: Books) -> None:
    with pytest.raises(FxSameCurrency):
        await books.quote("EUR", "EUR", amount=1)
    with pytest.raises(UnknownCurrencyPair):
        await books.quote("EUR", "CHF", amount=100)  # not in the table
    with pytest.raises(UnknownCurrencyPair):
        await books.quote("EUR", "USDC", amount=100)  # not ISO 4217


async def test_the_tenant_spread_overrides_the_default(books: Books) -> None:
    async with books.unit_of_work.begin() as session:
        await service.set_spread(session, tenant_id=books.tenant_id, spread_bps=0, now_ns=NOW_NS)
    quote = await books.quote("EUR", "USD", amount=100_00)
    assert (quote.spread_bps, quote.buy_amount, quote.rate) == (0, 110_50, "1.10500000000")


async def test_concurrent_conversions_with_one_quote_move_money_once(books: Books) -> None:
    await books.open("usd_2", "USD", owner="user-1")
    quote = await books.quote("EUR", "USD", amount=10_00)
    outcomes = await asyncio.gather(
        books.convert(quote),
        books.convert(quote),
        books.convert(quote, "eur", "usd_2"),
        return_exceptions=True,
    )
    successes = [o for o in outcomes if isinstance(o, service.Conversion)]
    assert successes, outcomes
    assert all(isinstance(o, service.Conversion | FxQuoteAlreadyUsed) for o in outcomes), outcomes
    assert await books.balance("eur") == 90_00
    assert await books.balance("usd") + await books.balance("usd_2") == quote.buy_amount
    await books.assert_balanced()


async def test_a_cross_currency_payment_may_cross_owners(books: Books) -> None:
    await books.open("merchant_usd", "USD", owner="merchant-7")
    quote = await books.quote("EUR", "USD", amount=20_00)
    with pytest.raises(FxInvalidAccounts):
        await books.convert(quote, "eur", "merchant_usd")  # a conversion stays with one owner
    paid = await service.pay_across_currencies(
        books.unit_of_work,
        books.ledger,
        tenant_id=books.tenant_id,
        quote_id=quote.id,
        payer_account_id=books.accounts["eur"],
        payee_account_id=books.accounts["merchant_usd"],
        now_ns=NOW_NS,
    )
    assert paid.quote.buy_account_id == books.accounts["merchant_usd"]
    assert await books.balance("merchant_usd") == quote.buy_amount
    assert await books.balance("eur") == 80_00
    await books.assert_balanced()


async def test_position_accounts_are_never_a_conversion_side(books: Books) -> None:
    first = await books.quote("EUR", "USD", amount=10_00)
    await books.convert(first)
    books.accounts["position"] = service.position_account_id(
        tenant_id=books.tenant_id, currency="USD"
    )
    second = await books.quote("EUR", "USD", amount=10_00)
    with pytest.raises(FxInvalidAccounts):
        await service.pay_across_currencies(
            books.unit_of_work,
            books.ledger,
            tenant_id=books.tenant_id,
            quote_id=second.id,
            payer_account_id=books.accounts["eur"],
            payee_account_id=books.accounts["position"],
            now_ns=NOW_NS,
        )
    await books.assert_balanced()


async def test_a_frozen_account_refuses_the_whole_chain(books: Books) -> None:
    await books.ledger.set_account_status(
        tenant_id=books.tenant_id, account_id=books.accounts["usd"], status=AccountStatus.FROZEN
    )
    quote = await books.quote("EUR", "USD", amount=10_00)
    with pytest.raises(FxConversionRefused) as refused:
        await books.convert(quote)
    assert refused.value.extensions["ledger_status"] == "account_frozen"
    assert await books.balance("eur") == 100_00
    await books.assert_balanced()


async def test_the_positions_are_the_charts_fx_position_accounts(books: Books) -> None:
    """Conversions post through the tenant's chart account ``fx_position`` per currency
    (code 3002), opened from either side as the same account: a chart opened first is
    answered ``exists`` by the conversion, and the chart sees the position's balance. No
    legacy (code 9100) position is opened."""
    for currency in ("EUR", "USD"):
        results = await books.ledger.create_accounts(
            [entry.account for entry in chart_of_accounts(books.tenant_id, currency)]
        )
        assert {r.status for r in results} == {CreateAccountStatus.OK}
    quote = await books.quote("EUR", "USD", amount=20_00)
    conversion = await books.convert(quote)
    sell_leg, buy_leg = await books.ledger.lookup_transfers(
        tenant_id=books.tenant_id, ids=[conversion.sell_transfer_id, conversion.buy_transfer_id]
    )
    chart = {
        currency: system_account_id(books.tenant_id, name="fx_position", currency=currency)
        for currency in ("EUR", "USD")
    }
    assert sell_leg.credit_account_id == chart["EUR"]
    assert buy_leg.debit_account_id == chart["USD"]
    eur, usd = await books.ledger.lookup_accounts(
        tenant_id=books.tenant_id, ids=[chart["EUR"], chart["USD"]]
    )
    assert (eur.code, eur.owner_ref) == (AccountCode.FX_POSITION, "system:fx_position")
    assert (eur.credits_posted, eur.debits_posted) == (quote.sell_amount, 0)
    assert (usd.credits_posted, usd.debits_posted) == (0, quote.buy_amount)
    legacy = [
        positions.legacy_position_account_id(tenant_id=books.tenant_id, currency=currency)
        for currency in ("EUR", "USD")
    ]
    assert await books.ledger.lookup_accounts(tenant_id=books.tenant_id, ids=legacy) == []
    await books.assert_balanced()


async def test_a_legacy_position_is_never_a_conversion_side(books: Books) -> None:
    """A position account conversions used before (code 9100) may still hold a balance in
    an existing database; it is never converted from or to."""
    legacy = positions.legacy_position_account_id(tenant_id=books.tenant_id, currency="USD")
    [opened] = await books.ledger.create_accounts(
        [
            NewAccount(
                id=legacy,
                tenant_id=books.tenant_id,
                ledger="USD",
                code=positions.LEGACY_FX_POSITION_ACCOUNT_CODE,
                owner_ref="user-1",
            )
        ]
    )
    assert opened.status is CreateAccountStatus.OK
    books.accounts["legacy"] = legacy
    quote = await books.quote("EUR", "USD", amount=10_00)
    with pytest.raises(FxInvalidAccounts):
        await books.convert(quote, buy="legacy")
    assert await books.balance("eur") == 100_00
    await books.assert_balanced()

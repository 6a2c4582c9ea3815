"""Fee schedules, fee previews and FX through the SDK against the real application, on both
backends: every method once end to end, and the refusals as typed errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from billfold.client import (
    Billfold,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    new_transfer_id,
)
from billfold.identity.types import Scope
from billfold.kit.clock import ManualClock
from client.sdk_support import running

RATES_FILE = str(Path(__file__).parents[1] / "fx" / "eurofxref-sample.xml")
FEES = [Scope.FEES_READ, Scope.FEES_WRITE]
FX = [Scope.FX_READ, Scope.FX_WRITE, Scope.LEDGER_READ, Scope.LEDGER_WRITE]
CARD_EU: dict[str, Any] = {
    "name": "card_eu",
    "method": "card",
    "currency": "EUR",
    "regions": ["DE", "FR"],
    "tiers": [{"bps": 140, "fixed_minor": 25, "min_minor": 50, "max_minor": 500}],
}
CATCH_ALL: dict[str, Any] = {"name": "all", "tiers": [{"bps": 50}]}


def test_fee_schedules_are_created_listed_replaced_and_previewed(database_url: str) -> None:
    scopes = [*FEES, Scope.PAYMENTS_WRITE]
    with running(database_url) as server, server.billfold(scopes) as billfold:
        merchant = billfold.merchants.create(
            legal_name="Shop", category_code="5411", settlement_currency="EUR"
        )["id"]
        created = billfold.fee_schedules.create(name="Standard", rules=[CATCH_ALL, CARD_EU])
        assert created["id"].startswith("fsc_") and created["version"] == 1
        assert created["merchant_id"] is None
        assert created["rules"][0] == {
            "name": "all",
            "method": None,
            "currency": None,
            "regions": None,
            "tiers": [
                {
                    "volume_from_minor": 0,
                    "bps": 50,
                    "fixed_minor": 0,
                    "min_minor": None,
                    "max_minor": None,
                }
            ],
        }
        assert billfold.fee_schedules.get(created["id"]) == created
        vip = billfold.fee_schedules.create(
            name="VIP", merchant_id=merchant, rules=[{"name": "vip", "tiers": [{"bps": 10}]}]
        )
        assert vip["merchant_id"] == merchant
        first = billfold.fee_schedules.list(limit=1)
        assert [item["id"] for item in first["items"]] == [created["id"]]
        assert first["next_cursor"] is not None
        assert [item["id"] for item in billfold.fee_schedules.iterate(limit=1)] == [
            created["id"],
            vip["id"],
        ]

        card = billfold.fee_quotes.create(method="card", currency="EUR", amount=10_000, region="DE")
        assert card == {
            "lines": [
                {
                    "rule": "card_eu",
                    "description": card["lines"][0]["description"],
                    "amount": "165",
                    "currency": "EUR",
                }
            ],
            "total": "165",
            "currency": "EUR",
        }
        for_vip = billfold.fee_quotes.create(
            method="card", currency="EUR", amount="10000", merchant_id=merchant, monthly_volume=0
        )
        assert for_vip["total"] == "10"

        replaced = billfold.fee_schedules.replace(
            created["id"], name="Cheaper", rules=[CATCH_ALL], version=1
        )
        assert (replaced["name"], replaced["version"]) == ("Cheaper", 2)
        with pytest.raises(ConflictError) as stale:
            billfold.fee_schedules.replace(created["id"], name="Stale", rules=[CARD_EU], version=1)
        assert stale.value.code == "fee_schedule_version_mismatch"
        with pytest.raises(ConflictError) as twice:
            billfold.fee_schedules.create(name="Second default", rules=[CATCH_ALL])
        assert twice.value.code == "fee_schedule_exists"
        assert billfold.fee_schedules.get(created["id"])["name"] == "Cheaper"


def test_fee_refusals_are_typed(database_url: str) -> None:
    with (
        running(database_url) as server,
        server.billfold(FEES) as billfold,
    ):
        with pytest.raises(ValidationError) as empty:
            billfold.fee_schedules.create(name="x", rules=[])
        assert empty.value.code == "validation_failed"
        with pytest.raises(NotFoundError):
            billfold.fee_schedules.get("fsc_" + "0" * 32)
    with server.billfold([Scope.FEES_READ]) as reader:
        with pytest.raises(PermissionDeniedError) as scope:
            reader.fee_schedules.create(name="x", rules=[CATCH_ALL])
        assert scope.value.code == "insufficient_scope"
        assert scope.value.extensions["required_scopes"] == ["fees:write"]


def _wallets(billfold: Billfold, *, funded_eur: int) -> tuple[str, str]:
    flags = ["debits_must_not_exceed_credits"]
    eur = billfold.accounts.create(ledger="EUR", code=1, flags=flags, owner_ref="u1")["id"]
    usd = billfold.accounts.create(ledger="USD", code=1, flags=flags, owner_ref="u1")["id"]
    bank = billfold.accounts.create(ledger="EUR", code=1)["id"]
    billfold.transfers.create(
        id=new_transfer_id(),
        debit_account_id=bank,
        credit_account_id=eur,
        amount=funded_eur,
        ledger="EUR",
        code=1,
    )
    return eur, usd


def test_a_quote_is_converted_once_and_reads_back(database_url: str) -> None:
    with (
        running(database_url, fx_rates_file=RATES_FILE) as server,
        server.billfold(FX) as billfold,
    ):
        rates = billfold.fx.rates()
        assert rates["base"] == "EUR" and "USD" in rates["rates"]
        eur, usd = _wallets(billfold, funded_eur=100_00)
        quote = billfold.fx.create_quote(sell_currency="EUR", buy_currency="USD", sell_amount=5000)
        assert (quote["status"], quote["fixed_side"], quote["sell_amount"]) == (
            "open",
            "sell",
            "5000",
        )
        by_buy = billfold.fx.create_quote(
            sell_currency="EUR", buy_currency="USD", buy_amount="1000"
        )
        assert (by_buy["fixed_side"], by_buy["buy_amount"]) == ("buy", "1000")
        done = billfold.fx.convert(quote_id=quote["id"], sell_account_id=eur, buy_account_id=usd)
        assert done["quote"]["status"] == "used"
        assert done["quote"]["sell_account_id"] == eur
        assert done["sell_transfer_id"].startswith("txf_")
        assert billfold.accounts.balances(usd)["credits_posted"] == quote["buy_amount"]
        with pytest.raises(ConflictError) as again:
            billfold.fx.convert(quote_id=quote["id"], sell_account_id=eur, buy_account_id=usd)
        assert again.value.code == "fx_quote_already_used"
        assert billfold.fx.get_quote(quote["id"])["status"] == "used"
        listed = billfold.fx.list_quotes(limit=1)
        assert [item["id"] for item in listed["items"]] == [quote["id"]]
        assert [item["id"] for item in billfold.fx.iterate_quotes(limit=1)] == [
            quote["id"],
            by_buy["id"],
        ]
    with pytest.raises(ValueError, match="exactly one"):
        billfold.fx.create_quote(sell_currency="EUR", buy_currency="USD")


def test_expired_quotes_and_bad_input_are_typed_errors(database_url: str) -> None:
    with running(database_url, fx_rates_file=RATES_FILE, fx_quote_ttl_s=30) as server:
        clock = ManualClock()
        server.client.app.state.fx_clock = clock  # type: ignore[attr-defined]
        with server.billfold(FX) as billfold:
            eur, usd = _wallets(billfold, funded_eur=100_00)
            stale = billfold.fx.create_quote(
                sell_currency="EUR", buy_currency="USD", sell_amount=5000
            )
            clock.advance(seconds=30)
            assert billfold.fx.get_quote(stale["id"])["status"] == "expired"
            with pytest.raises(ConflictError) as expired:
                billfold.fx.convert(quote_id=stale["id"], sell_account_id=eur, buy_account_id=usd)
            assert expired.value.code == "fx_quote_expired"
            too_big = billfold.fx.create_quote(
                sell_currency="EUR", buy_currency="USD", sell_amount=10_001
            )
            with pytest.raises(ValidationError) as poor:
                billfold.fx.convert(quote_id=too_big["id"], sell_account_id=eur, buy_account_id=usd)
            assert poor.value.code == "fx_insufficient_funds"
            with pytest.raises(ValidationError) as pair:
                billfold.fx.create_quote(sell_currency="EUR", buy_currency="XAU", sell_amount=1)
            assert pair.value.code == "fx_unknown_currency_pair"
            with pytest.raises(NotFoundError) as missing:
                billfold.fx.get_quote("fxq_" + "0" * 32)
            assert missing.value.code == "fx_quote_not_found"
            assert billfold.accounts.balances(usd)["credits_posted"] == "0"


def test_the_spread_is_set_by_an_admin_key_only(database_url: str) -> None:
    with (
        running(database_url, fx_rates_file=RATES_FILE, fx_spread_bps_default=25) as server,
        server.billfold([Scope.FX_READ]) as reader,
    ):
        assert reader.fx.settings() == {"spread_bps": 25, "quote_ttl_s": 30, "custom": False}
        with pytest.raises(PermissionDeniedError) as refused:
            reader.fx.set_spread(spread_bps=40)
        assert refused.value.code == "insufficient_scope"
        with server.billfold([Scope.TENANT_ADMIN]) as admin:
            assert admin.fx.set_spread(spread_bps=40)["custom"] is True
            with pytest.raises(ValidationError):
                admin.fx.set_spread(spread_bps=-1)
        assert reader.fx.settings()["spread_bps"] == 40

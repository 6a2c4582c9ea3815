"""Cross-currency P2P and merchant payments: the payer's money is converted through the FX
position accounts with a locked quote, in the payment's own linked chain; the quote is
the payer's (checked: currencies, amount, expiry, single use) or one made on the fly.
Every scenario ends with `ledger verify` and per-currency zero-sum books."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from typing import Any

import pytest

from billfold.fx.models import FxQuoteRow
from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import merchant, p2p, recovery
from payments.payments_support import TEST_CARD, User, World, fee_of, problem

RATES_FILE = str(pathlib.Path(__file__).parent.parent / "fx" / "eurofxref-sample.xml")


def _world(database_url: str) -> World:
    return World(database_url, fx_rates_file=RATES_FILE)


def _fund_eur(world: World, user: User, amount: int) -> None:
    before = world.wallet(user, "EUR")["available"]
    gross = amount
    while gross - fee_of(gross) < amount:
        gross += 1
    response = world.top_up(user, gross, currency="EUR", card=TEST_CARD)
    assert response.status_code == 201, response.text
    world.deliver()
    assert world.wallet(user, "EUR")["available"] == before + gross - fee_of(gross)


def _quote(world: World, *, buy_amount: int, sell: str = "EUR", buy: str = "USD") -> Any:
    body = {"sell_currency": sell, "buy_currency": buy, "buy_amount": str(buy_amount)}
    response = world.client.post("/v1/fx/quotes", json=body, headers=world.api)
    assert response.status_code == 201, response.text
    return response.json()


def _p2p(world: World, sender: User, recipient: User, amount: int, **fields: Any) -> Any:
    body = {"recipient": recipient.handle, "amount": amount, "currency": "USD", **fields}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def _quote_row(world: World, public_id: str) -> FxQuoteRow:
    async def read() -> FxQuoteRow:
        async with world.runtime.unit_of_work.begin() as session:
            row = await session.get(FxQuoteRow, uuid.UUID(hex=public_id.removeprefix("fxq_")))
            assert row is not None
            return row

    row: FxQuoteRow = world.client.portal.call(read)
    return row


def _expire_quote(world: World, public_id: str) -> None:
    async def expire() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            row = await session.get(FxQuoteRow, uuid.UUID(hex=public_id.removeprefix("fxq_")))
            assert row is not None
            row.expires_at = 1

    world.client.portal.call(expire)


def test_p2p_from_another_currency_converts_with_a_quote_made_on_the_fly(
    database_url: str,
) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        eur_before = world.wallet(ann, "EUR")["available"]
        response = _p2p(world, ann, bob, 1_000, source_currency="EUR")
        assert response.status_code == 201, response.text
        payment = response.json()
        assert payment["state"] == "succeeded"
        fx = payment["fx"]
        # The quote bought the amount and the P2P fee, in the payment's currency.
        assert (fx["source_currency"], fx["currency"]) == ("EUR", "USD")
        assert fx["amount"] == str(1_000 + fee_of(1_000))
        sold = int(fx["source_amount"])
        # 1020 USD at 1.1050 USD per EUR less the spread: a little more than 923 EUR.
        assert 923 <= sold <= 940
        steps = {t["step"]: t for t in payment["transfers"]}
        assert steps["fx:sell"]["currency"] == "EUR"
        assert steps["fx:sell"]["amount"] == fx["source_amount"]
        assert steps["fx:buy"]["currency"] == "USD"
        assert steps["fx:buy"]["id"] == fx["buy_transfer_id"]
        assert steps["transfer"]["amount"] == "1000"
        assert world.wallet(ann, "EUR")["available"] == eur_before - sold
        assert world.wallet(ann, "USD") == {"available": 0, "pending": 0, "held": 0}
        assert world.wallet(bob, "USD")["available"] == 1_000
        # The conversion's other side is the chart's fx_position account in each currency.
        assert world.system("fx_position", "EUR") == {
            "debits_posted": 0,
            "credits_posted": sold,
            "debits_pending": 0,
            "credits_pending": 0,
        }
        assert world.system("fx_position", "USD") == {
            "debits_posted": 1_000 + fee_of(1_000),
            "credits_posted": 0,
            "debits_pending": 0,
            "credits_pending": 0,
        }
        used = _quote_row(world, fx["quote_id"])
        assert used.used_at is not None
        world.assert_books()


def test_p2p_with_the_payers_quote_uses_it_once(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        quote = _quote(world, buy_amount=1_000 + fee_of(1_000))
        # The sell currency comes from the quote when the payer does not name it.
        first = _p2p(world, ann, bob, 1_000, quote_id=quote["id"])
        assert first.status_code == 201, first.text
        assert first.json()["fx"]["quote_id"] == quote["id"]
        assert first.json()["fx"]["source_amount"] == quote["sell_amount"]
        again = _p2p(world, ann, bob, 1_000, quote_id=quote["id"])
        problem(again, 409, "fx_quote_already_used")
        assert world.wallet(bob, "USD")["available"] == 1_000
        world.assert_books()


def test_a_mismatched_or_expired_quote_is_refused_and_moves_nothing(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        eur_before = world.wallet(ann, "EUR")["available"]
        short = _quote(world, buy_amount=1_000)  # without the fee
        body = problem(_p2p(world, ann, bob, 1_000, quote_id=short["id"]), 422, "fx_quote_mismatch")
        assert body["buy_amount"] == str(1_000 + fee_of(1_000))
        other_pair = _quote(world, buy_amount=1_020, sell="GBP")
        problem(
            _p2p(world, ann, bob, 1_000, source_currency="EUR", quote_id=other_pair["id"]),
            422,
            "fx_quote_mismatch",
        )
        late = _quote(world, buy_amount=1_020)
        _expire_quote(world, late["id"])
        problem(_p2p(world, ann, bob, 1_000, quote_id=late["id"]), 409, "fx_quote_expired")
        unknown = f"fxq_{uuid.uuid4().hex}"
        problem(_p2p(world, ann, bob, 1_000, quote_id=unknown), 404, "fx_quote_not_found")
        assert world.wallet(ann, "EUR")["available"] == eur_before
        assert world.wallet(bob, "USD")["available"] == 0
        # None of them was used up.
        assert _quote_row(world, short["id"]).used_at is None
        world.assert_books()


def test_a_refused_conversion_gives_the_quote_back(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 500)  # not enough for ~925 EUR
        quote = _quote(world, buy_amount=1_020)
        problem(_p2p(world, ann, bob, 1_000, quote_id=quote["id"]), 422, "insufficient_funds")
        assert _quote_row(world, quote["id"]).used_at is None
        assert world.wallet(ann, "EUR")["available"] == 500
        _fund_eur(world, ann, 1_000)
        paid = _p2p(world, ann, bob, 1_000, quote_id=quote["id"])
        assert paid.status_code == 201, paid.text
        assert world.wallet(bob, "USD")["available"] == 1_000
        world.assert_books()


def test_a_merchant_payment_authorized_from_another_currency(database_url: str) -> None:
    with _world(database_url) as world:
        ann, shop = world.user(), world.merchant("USD")
        _fund_eur(world, ann, 5_000)
        eur_before = world.wallet(ann, "EUR")["available"]
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 2_000, "currency": "USD"},
            headers=world.api,
        ).json()
        pay = f"/v1/me/payments/{created['id']}/authorize"
        wrong = _quote(world, buy_amount=1_999)
        problem(
            world.client.post(pay, json={"quote_id": wrong["id"]}, headers=ann.auth),
            422,
            "fx_quote_mismatch",
        )
        authorized = world.client.post(pay, json={"source_currency": "EUR"}, headers=ann.auth)
        assert authorized.status_code == 200, authorized.text
        body = authorized.json()
        assert body["state"] == "authorized"
        sold = int(body["fx"]["source_amount"])
        assert body["fx"]["amount"] == "2000"
        assert body["authorization_expires_at"] is not None
        # Converted now, held in the payment's currency for the merchant.
        assert world.wallet(ann, "EUR")["available"] == eur_before - sold
        assert world.wallet(ann, "USD") == {"available": 0, "pending": 0, "held": 2_000}
        captured = world.client.post(
            f"/v1/payments/{created['id']}/capture", json={}, headers=world.api
        )
        assert captured.status_code == 200, captured.text
        assert captured.json()["state"] == "captured"
        assert world.merchant_wallet(shop)["available"] == 2_000 - fee_of(2_000)
        assert world.wallet(ann, "USD") == {"available": 0, "pending": 0, "held": 0}
        explained = world.payment(created["id"])
        assert {"fx:sell", "fx:buy", "hold", "capture"} <= {
            t["step"] for t in explained["transfers"]
        }
        world.assert_books()


def test_two_payments_racing_for_one_quote_convert_once(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob, cat = world.user(), world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        quote = _quote(world, buy_amount=1_000 + fee_of(1_000))
        quote_id = uuid.UUID(hex=quote["id"].removeprefix("fxq_"))

        async def race() -> list[Any]:
            sends = [
                p2p.send_p2p(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    sender_id=uuid.UUID(hex=ann.id.removeprefix("usr_")),
                    recipient=recipient.handle,
                    amount=1_000,
                    currency="USD",
                    quote_id=quote_id,
                )
                for recipient in (bob, cat)
            ]
            return list(await asyncio.gather(*sends, return_exceptions=True))

        results = world.client.portal.call(race)
        paid = [result for result in results if isinstance(result, uuid.UUID)]
        refused = [result for result in results if isinstance(result, BillfoldError)]
        assert len(paid) == 1
        assert [error.code for error in refused] == ["fx_quote_already_used"]
        received = world.wallet(bob, "USD")["available"] + world.wallet(cat, "USD")["available"]
        assert received == 1_000
        assert world.wallet(ann, "EUR")["available"] == 5_000 - int(quote["sell_amount"])
        world.assert_books()


def test_a_cross_currency_p2p_interrupted_before_the_ledger_is_re_driven_once(
    database_url: str,
) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        ledger = world.runtime.book.ledger

        async def crash(transfers: Any) -> Any:
            raise RuntimeError("the process died before the ledger")

        ledger.submit = crash  # type: ignore[method-assign]
        try:
            with pytest.raises(RuntimeError):
                _p2p(world, ann, bob, 1_000, source_currency="EUR")
        finally:
            del ledger.submit
        assert world.wallet(bob, "USD")["available"] == 0
        for _ in range(2):
            world.client.portal.call(
                lambda: recovery.resume_interrupted(world.runtime, older_than_s=0)
            )
        assert world.wallet(bob, "USD")["available"] == 1_000
        assert world.wallet(ann, "USD") == {"available": 0, "pending": 0, "held": 0}
        world.assert_books()


def test_a_money_request_paid_from_another_currency(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        asked = world.client.post(
            "/v1/me/money-requests",
            json={"payer": ann.handle, "amount": 800, "currency": "USD"},
            headers=bob.auth,
        ).json()
        approve = f"/v1/me/money-requests/{asked['id']}/approve"
        problem(
            world.client.post(approve, json={"source_currency": "eur"}, headers=ann.auth),
            422,
            "validation_failed",
        )
        approved = world.client.post(approve, json={"source_currency": "EUR"}, headers=ann.auth)
        assert approved.status_code == 200, approved.text
        payment = world.payment(approved.json()["payment_id"])
        assert payment["fx"]["source_currency"] == "EUR"
        assert payment["fx"]["amount"] == str(800 + fee_of(800))
        assert world.wallet(bob, "USD")["available"] == 800
        world.assert_books()


class _CrashError(Exception):
    """The process dies here."""


@pytest.mark.parametrize("hold_placed", [False, True], ids=["before_hold", "after_hold"])
def test_a_cross_currency_authorization_interrupted_at_its_hold_is_recovered(
    database_url: str, monkeypatch: pytest.MonkeyPatch, hold_placed: bool
) -> None:
    with _world(database_url) as world:
        ann, shop = world.user(), world.merchant("USD")
        _fund_eur(world, ann, 5_000)
        eur_before = world.wallet(ann, "EUR")["available"]
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 2_000, "currency": "USD"},
            headers=world.api,
        ).json()
        payment_id = uuid.UUID(hex=created["id"].removeprefix("pay_"))
        quote = _quote(world, buy_amount=2_000)
        real = merchant.apply_steps

        async def crash(*args: Any) -> None:
            if hold_placed:
                await real(*args)
            raise _CrashError

        monkeypatch.setattr(merchant, "apply_steps", crash)

        async def interrupted() -> None:
            with pytest.raises(_CrashError):
                await merchant.authorize(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    user_id=uuid.UUID(hex=ann.id.removeprefix("usr_")),
                    payment_id=payment_id,
                    quote_id=uuid.UUID(hex=quote["id"].removeprefix("fxq_")),
                )

        world.client.portal.call(interrupted)
        monkeypatch.undo()
        assert _quote_row(world, quote["id"]).used_at is not None  # reserved by the claim
        world.runtime.claim_grace_s = 0
        for _ in range(2):
            world.client.portal.call(
                lambda: recovery.resume_interrupted(world.runtime, older_than_s=0)
            )
        shown = world.payment(created["id"])
        if hold_placed:
            assert shown["state"] == "authorized"
            assert shown["fx"]["source_amount"] == quote["sell_amount"]
            assert {"fx:sell", "fx:buy", "hold"} == {t["step"] for t in shown["transfers"]}
            assert world.wallet(ann, "USD") == {"available": 0, "pending": 0, "held": 2_000}
            assert world.wallet(ann, "EUR")["available"] == eur_before - int(quote["sell_amount"])
        else:
            assert shown["state"] == "requires_payment" and shown["fx"] is None
            assert _quote_row(world, quote["id"]).used_at is None  # given back
            assert world.wallet(ann, "EUR")["available"] == eur_before
            pay = f"/v1/me/payments/{created['id']}/authorize"
            paid = world.client.post(pay, json={"quote_id": quote["id"]}, headers=ann.auth)
            assert paid.status_code == 200, paid.text
            assert paid.json()["state"] == "authorized"
        world.assert_books()

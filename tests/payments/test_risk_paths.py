"""Top-ups, withdrawals, merchant payments, refunds and FX conversions past the risk
decision: allow, challenge, block and review (approve, reject) on both backends."""

from __future__ import annotations

from typing import Any

from billfold.payments.schemas import PaymentState
from billfold.payments.states import State
from billfold.risk.types import Action
from fx.test_fx_api import SAMPLE
from ledger.ledger_api_support import balances, open_account, post_transfer, transfer
from payments.payments_support import User, World, problem
from payments.risk_support import (
    BLOCK,
    CHALLENGE,
    REVIEW,
    AmountDecider,
    case,
    decisions,
    expire,
    install,
    lapse,
    resolve,
    step_up,
    totp,
)

# Payout and bank scenarios of the sandbox go by `amount % 100` (00: success).
PAYOUTS = AmountDecider({9_300: Action.CHALLENGE, 9_100: Action.REVIEW, 9_200: Action.BLOCK})
DECLINED_CARD = "4000000000000002"


def test_the_api_states_are_the_state_machines() -> None:
    assert set(PaymentState.__args__) == {state.value for state in State}  # type: ignore[attr-defined]


# -- top-ups


def test_top_up_actions(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann = world.user()
        allowed = world.top_up(ann, 500)
        assert allowed.status_code == 201 and allowed.json()["risk_decision_id"]
        world.deliver()
        problem(world.top_up(ann, BLOCK), 403, "risk_blocked")
        body = problem(world.top_up(ann, CHALLENGE), 403, "step_up_required")
        assert body["payee"] == "provider:sandbox_card"
        secret = totp(world, ann)
        token = step_up(
            world, ann, secret, amount=CHALLENGE, currency="USD", payee="provider:sandbox_card"
        )
        stepped = world.top_up(ann, CHALLENGE, step_up_token=token)
        assert stepped.status_code == 201, stepped.text
        world.deliver()
        assert world.wallet(ann)["available"] == 500 + CHALLENGE


def test_a_reviewed_top_up_is_parked_until_approved(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann = world.user()
        held = world.top_up(ann, REVIEW)
        assert held.status_code == 202, held.text
        payment = held.json()
        assert (payment["state"], payment["transfers"]) == ("in_review", [])
        assert world.sender.take() == []  # the provider was not asked
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        resolve(world, payment["id"], approve=True)
        resolve(world, payment["id"], approve=True)
        world.deliver()
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == REVIEW


def test_an_approved_top_up_charges_the_full_card_number(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann = world.user()
        payment = world.top_up(ann, REVIEW, instrument=DECLINED_CARD).json()
        resolve(world, payment["id"], approve=True)
        world.deliver()
        done = world.payment(payment["id"])
        # The declined test card's own scenario, not the amount's (`insufficient_funds`).
        assert done["state"] == "failed" and done["failure_code"] != "insufficient_funds"
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}


def test_a_rejected_top_up_never_reaches_the_provider(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann = world.user()
        payment = world.top_up(ann, REVIEW).json()
        resolve(world, payment["id"], approve=False)
        done = world.payment(payment["id"])
        assert (done["state"], done["failure_code"]) == ("failed", "risk_rejected")
        assert world.sender.take() == []


# -- withdrawals


def _withdraw(world: World, user: User, amount: int, **fields: Any) -> Any:
    body = {
        "amount": amount,
        "currency": "USD",
        "method": "bank_transfer",
        "destination": "DE89370400440532013000",
        **fields,
    }
    return world.client.post("/v1/me/withdrawals", json=body, headers=user.auth)


def test_withdrawal_actions(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world, AmountDecider(PAYOUTS.actions))
        ann = world.user()
        world.fund(ann, 40_000)
        problem(_withdraw(world, ann, 9_200), 403, "risk_blocked")
        body = problem(_withdraw(world, ann, 9_300), 403, "step_up_required")
        assert body["payee"] == "iban:DE89370400440532013000"
        assert world.wallet(ann)["available"] == 40_000
        secret = totp(world, ann)
        other = step_up(world, ann, secret, amount=9_300, currency="USD", payee="card:1234")
        problem(_withdraw(world, ann, 9_300, step_up_token=other), 403, "step_up_rejected")
        token = step_up(world, ann, secret, amount=9_300, currency="USD", payee=body["payee"])
        sent = _withdraw(world, ann, 9_300, step_up_token=token)
        assert sent.status_code == 201 and sent.json()["state"] == "processing", sent.text
        world.deliver()
        assert world.wallet(ann)["available"] == 40_000 - 9_300


def test_a_reviewed_withdrawal_keeps_its_hold_until_approved(database_url: str) -> None:
    with World(database_url) as world:
        install(world, AmountDecider(PAYOUTS.actions))
        ann = world.user()
        world.fund(ann, 40_000)
        held = _withdraw(world, ann, 9_100)
        assert held.status_code == 202 and held.json()["state"] == "in_review", held.text
        assert world.sender.take() == []  # no payout asked for
        before = world.wallet(ann)
        assert before["available"] == 40_000 - 9_100 - (9_100 // 100 + 10)
        resolve(world, held.json()["id"], approve=True)
        resolve(world, held.json()["id"], approve=True)
        world.deliver()
        done = world.payment(held.json()["id"])
        assert done["state"] == "succeeded"
        assert world.wallet(ann) == {**before, "held": 0, "pending": 0}
        rejected = _withdraw(world, ann, 9_100).json()
        resolve(world, rejected["id"], approve=False)
        assert world.payment(rejected["id"])["failure_code"] == "risk_rejected"
        assert world.wallet(ann) == {**before, "held": 0, "pending": 0}


# -- merchant payments


def _merchant_payment(world: World, shop: str, amount: int, capture: str = "automatic") -> str:
    body = {"merchant_id": shop, "amount": amount, "currency": "USD", "capture": capture}
    created = world.client.post("/v1/payments", json=body, headers=world.api)
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    return payment_id


def _authorize(world: World, user: User, payment_id: str, **body: Any) -> Any:
    return world.client.post(
        f"/v1/me/payments/{payment_id}/authorize", json=body or None, headers=user.auth
    )


def test_merchant_payment_actions(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 40_000)
        blocked = _merchant_payment(world, shop, BLOCK)
        problem(_authorize(world, ann, blocked), 403, "risk_blocked")
        assert world.payment(blocked)["state"] == "requires_payment"  # another try may pay
        challenged = _merchant_payment(world, shop, CHALLENGE)
        body = problem(_authorize(world, ann, challenged), 403, "step_up_required")
        assert body["payee"] == shop
        secret = totp(world, ann)
        token = step_up(world, ann, secret, amount=CHALLENGE, currency="USD", payee=shop)
        paid = _authorize(world, ann, challenged, step_up_token=token)
        assert paid.status_code == 200 and paid.json()["state"] == "captured", paid.text
        assert world.merchant_wallet(shop)["available"] == CHALLENGE


def test_a_reviewed_merchant_payment_is_authorized_only_when_approved(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 40_000)
        payment_id = _merchant_payment(world, shop, REVIEW)
        held = _authorize(world, ann, payment_id)
        assert held.status_code == 202 and held.json()["state"] == "in_review", held.text
        assert world.wallet(ann)["available"] == 40_000 - REVIEW
        capture = world.client.post(
            f"/v1/payments/{payment_id}/capture", json={}, headers=world.api
        )
        problem(capture, 409, "invalid_state_transition")
        resolve(world, payment_id, approve=True)
        resolve(world, payment_id, approve=True)
        assert world.payment(payment_id)["state"] == "captured"
        assert world.merchant_wallet(shop)["available"] == REVIEW
        rejected = _merchant_payment(world, shop, REVIEW)
        _authorize(world, ann, rejected)
        resolve(world, rejected, approve=False)
        done = world.payment(rejected)
        assert (done["state"], done["failure_code"]) == ("failed", "risk_rejected")
        assert world.wallet(ann)["available"] == 40_000 - REVIEW
        lapsed = _merchant_payment(world, shop, REVIEW)
        _authorize(world, ann, lapsed)
        lapse(world, lapsed)
        expire(world)
        assert world.payment(lapsed)["failure_code"] == "risk_review_expired"
        assert world.wallet(ann) == {"available": 40_000 - REVIEW, "pending": 0, "held": 0}


# -- refunds


def _captured(world: World, user: User, shop: str, amount: int) -> str:
    payment_id = _merchant_payment(world, shop, amount)
    assert _authorize(world, user, payment_id).status_code == 200
    return payment_id


def _refund(world: World, payment_id: str, amount: int) -> Any:
    return world.client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": amount}, headers=world.api
    )


def test_refund_actions_and_review(database_url: str) -> None:
    with World(database_url) as world:
        install(world)
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 40_000)
        payment_id = _captured(world, ann, shop, 30_000)
        merchant_before = world.merchant_wallet(shop)["available"]
        body = problem(_refund(world, payment_id, BLOCK), 403, "risk_blocked")
        payment = world.payment(payment_id)
        [blocked] = payment["refunds"]
        assert (blocked["state"], blocked["failure_code"]) == ("failed", "risk_blocked")
        assert blocked["risk_decision_id"] == body["decision_id"]
        assert payment["refunded_amount"] == "0"
        allowed = _refund(world, payment_id, 100)
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["refunds"][-1]["state"] == "succeeded"
        merchant_before = world.merchant_wallet(shop)["available"]
        # No end user can step up for a merchant's refund: a challenge is held for review.
        for amount, approve in ((CHALLENGE, True), (REVIEW, False)):
            held = _refund(world, payment_id, amount)
            assert held.status_code == 202, held.text
            refund = held.json()["refunds"][-1]
            assert refund["state"] == "in_review"
            opened = case(world, refund["id"])
            assert opened is not None and opened.kind == "refund"
            resolve(world, refund["id"], approve=approve)
            resolve(world, refund["id"], approve=approve)
        payment = world.payment(payment_id)
        states = [(row["amount"], row["state"]) for row in payment["refunds"]]
        assert states[2:] == [(str(CHALLENGE), "succeeded"), (str(REVIEW), "failed")]
        assert payment["refunds"][3]["failure_code"] == "risk_rejected"
        assert (payment["state"], payment["refunded_amount"]) == (
            "partially_refunded",
            str(100 + CHALLENGE),
        )
        proportional = 30_000 // 100  # the 1% part of the capture fee, returned pro rata
        fee_back = proportional * (100 + CHALLENGE) // 30_000 - proportional * 100 // 30_000
        assert world.merchant_wallet(shop)["available"] == merchant_before - CHALLENGE + fee_back
        assert world.wallet(ann)["available"] == 40_000 - 30_000 + 100 + CHALLENGE


# -- FX conversions


def _fx_accounts(world: World) -> tuple[str, str]:
    flags = ["debits_must_not_exceed_credits"]
    eur = open_account(world.client, world.key, ledger="EUR", flags=flags, owner_ref="fxu")
    usd = open_account(world.client, world.key, ledger="USD", flags=flags, owner_ref="fxu")
    bank = open_account(world.client, world.key, ledger="EUR")
    post_transfer(world.client, world.key, transfer(bank["id"], eur["id"], "100000", ledger="EUR"))
    return eur["id"], usd["id"]


def _convert(world: World, sell: str, buy: str, amount: int) -> Any:
    quote = world.client.post(
        "/v1/fx/quotes",
        json={"sell_currency": "EUR", "buy_currency": "USD", "sell_amount": str(amount)},
        headers=world.api,
    )
    assert quote.status_code == 201, quote.text
    body = {"quote_id": quote.json()["id"], "sell_account_id": sell, "buy_account_id": buy}
    return world.client.post("/v1/fx/conversions", json=body, headers=world.api)


def _net(world: World, account: str) -> tuple[int, int]:
    found = balances(world.client, world.key, account)
    posted = int(found["credits_posted"]) - int(found["debits_posted"])
    pending = int(found["credits_pending"]) - int(found["debits_pending"])
    return posted, pending


def test_fx_conversion_actions_and_review(database_url: str) -> None:
    with World(database_url, fees=False, fx_rates_file=SAMPLE) as world:
        install(world)
        eur, usd = _fx_accounts(world)
        allowed = _convert(world, eur, usd, 1_000)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["state"] == "succeeded" and allowed.json()["risk_decision_id"]
        problem(_convert(world, eur, usd, BLOCK), 403, "risk_blocked")
        assert _net(world, eur) == (100_000 - 1_000, 0)
        for amount, approve in ((REVIEW, True), (CHALLENGE, False)):
            held = _convert(world, eur, usd, amount)
            assert held.status_code == 202 and held.json()["state"] == "in_review", held.text
            assert _net(world, eur)[1] == -amount
            resolve(world, held.json()["id"], approve=approve)
            resolve(world, held.json()["id"], approve=approve)
            assert _net(world, eur)[1] == 0
        assert _net(world, eur)[0] == 100_000 - 1_000 - REVIEW
        kinds = {row.kind for row in decisions(world)}
        assert kinds == {"fx_conversion"}

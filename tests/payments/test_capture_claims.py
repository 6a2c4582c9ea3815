"""A capture claims its amount and prices its fees once, under the payment's row lock,
before the ledger moves money: a capture retried or recovered after a crash posts and
records what was priced then, whatever the schedule or the month's volume says by then;
another amount meanwhile is a 409 `capture_in_progress`; a claim the ledger never posted
is forgotten when the hold is voided, expires or is refused."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.ledger.types import AccountStatus
from billfold.payments.flows import merchant
from payments.payments_support import (
    CrashError,
    World,
    crashing,
    internal_id,
    problem,
    three_percent,
)


def _authorized(world: World, amount: int = 1_000) -> tuple[Any, str, str]:
    """A payer with 5,000, a shop, and a manual-capture payment of `amount` the payer
    authorized."""
    ann, shop = world.user(), world.merchant()
    world.fund(ann, 5_000)
    body = {"merchant_id": shop, "amount": amount, "currency": "USD", "capture": "manual"}
    payment_id = world.client.post("/v1/payments", json=body, headers=world.api).json()["id"]
    authorized = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
    assert authorized.json()["state"] == "authorized", authorized.text
    return ann, shop, payment_id


def _capture_call(world: World, payment_id: str, amount: int) -> Any:
    return functools.partial(
        merchant.capture,
        world.runtime,
        tenant_id=world.tenant_id,
        mode=Mode.TEST,
        payment_id=internal_id(payment_id),
        amount=amount,
    )


def _crash_capture(
    world: World, monkeypatch: pytest.MonkeyPatch, payment_id: str, amount: int, *, after: bool
) -> None:
    real = merchant.apply_steps
    monkeypatch.setattr(
        merchant, "apply_steps", crashing(real, after_ledger=after, first_step="capture")
    )
    with pytest.raises(CrashError):
        world.client.portal.call(_capture_call(world, payment_id, amount))
    monkeypatch.setattr(merchant, "apply_steps", real)
    assert world.payment(payment_id)["state"] == "authorized"


def _capture(world: World, payment_id: str, amount: int) -> Any:
    return world.client.post(
        f"/v1/payments/{payment_id}/capture", json={"amount": amount}, headers=world.api
    )


def _captured_at_the_first_price(world: World, ann: Any, shop: str, payment_id: str) -> None:
    """600 captured with the fee priced before the crash (1% + 10 = 16), not 3% (18)."""
    after = world.payment(payment_id)
    assert (after["state"], after["captured_amount"]) == ("captured", "600")
    assert [fee["amount"] for fee in after["fees"]] == ["16"]
    assert world.wallet(ann) == {"available": 4_400, "pending": 0, "held": 0}
    assert world.merchant_wallet(shop)["available"] == 584
    world.assert_books()


@pytest.mark.parametrize("after_ledger", [True, False], ids=["after_ledger", "before_ledger"])
def test_a_capture_retried_after_a_crash_and_a_price_change_keeps_its_price(
    database_url: str, monkeypatch: pytest.MonkeyPatch, after_ledger: bool
) -> None:
    """Before, the retry priced again: after the ledger, the ledger refused the different
    fee (the payment stayed `authorized` with its money captured); before it, the capture
    went through at the new price."""
    with World(database_url) as world:  # 1% + 10
        ann, shop, payment_id = _authorized(world)
        _crash_capture(world, monkeypatch, payment_id, 600, after=after_ledger)
        world.runtime.fee_quoter = three_percent
        retried = _capture(world, payment_id, 600)
        assert retried.status_code == 200, retried.text
        _captured_at_the_first_price(world, ann, shop, payment_id)
        assert _capture(world, payment_id, 600).json()["state"] == "captured"  # a retry


@pytest.mark.parametrize("after_ledger", [True, False], ids=["after_ledger", "before_ledger"])
def test_a_capture_a_crash_interrupted_is_finished_by_recovery_at_its_price(
    database_url: str, monkeypatch: pytest.MonkeyPatch, after_ledger: bool
) -> None:
    with World(database_url) as world:
        ann, shop, payment_id = _authorized(world)
        _crash_capture(world, monkeypatch, payment_id, 600, after=after_ledger)
        world.runtime.fee_quoter = three_percent
        world.resume_interrupted()
        _captured_at_the_first_price(world, ann, shop, payment_id)
        world.resume_interrupted()  # nothing left to do
        _captured_at_the_first_price(world, ann, shop, payment_id)


def test_a_claimed_capture_refuses_another_amount(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, shop, payment_id = _authorized(world)
        _crash_capture(world, monkeypatch, payment_id, 600, after=False)
        refused = problem(_capture(world, payment_id, 500), 409, "capture_in_progress")
        assert refused["amount"] == "600"
        assert world.wallet(ann)["held"] == 1_000  # nothing moved
        assert _capture(world, payment_id, 600).status_code == 200
        _captured_at_the_first_price(world, ann, shop, payment_id)


def test_captures_of_different_amounts_sent_together_capture_one(database_url: str) -> None:
    """Before, each priced and posted its own chain, and the ledger decided among them."""
    with World(database_url) as world:
        ann, shop, payment_id = _authorized(world)
        amounts = [600, 500, 600, 400, 500, 600]

        async def race() -> list[Any]:
            calls = [_capture_call(world, payment_id, amount)() for amount in amounts]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = world.client.portal.call(race)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, BillfoldError) for r in refused), refused
        assert {r.code for r in refused if isinstance(r, BillfoldError)} <= {
            "capture_in_progress",
            "invalid_state_transition",
        }
        captured = world.payment(payment_id)
        amount = int(captured["captured_amount"])
        assert captured["state"] == "captured" and amount in amounts
        assert len(results) - len(refused) == amounts.count(amount)
        fee = amount // 100 + 10
        assert [line["amount"] for line in captured["fees"]] == [str(fee)]
        assert world.wallet(ann) == {"available": 5_000 - amount, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == amount - fee
        world.assert_books()


def test_a_claim_never_posted_is_forgotten_when_the_payment_is_voided(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, shop, payment_id = _authorized(world)
        _crash_capture(world, monkeypatch, payment_id, 600, after=False)
        voided = world.client.post(f"/v1/payments/{payment_id}/void", headers=world.api)
        assert voided.json()["state"] == "voided", voided.text
        assert voided.json()["fees"] == []
        problem(_capture(world, payment_id, 600), 409, "invalid_state_transition")
        world.resume_interrupted()
        assert world.payment(payment_id)["state"] == "voided"
        assert world.wallet(ann) == {"available": 5_000, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 0
        world.assert_books()


def test_a_claim_never_posted_is_forgotten_when_the_authorization_expires(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, _, payment_id = _authorized(world)
        _crash_capture(world, monkeypatch, payment_id, 600, after=False)

        world.lapse_authorization(payment_id)
        outcome = world.client.portal.call(
            functools.partial(merchant.expire, world.runtime, internal_id(payment_id))
        )
        assert outcome == "expired_authorization"
        expired = world.payment(payment_id)
        assert (expired["state"], expired["fees"]) == ("expired", [])
        assert world.wallet(ann) == {"available": 5_000, "pending": 0, "held": 0}
        world.assert_books()


def test_a_capture_the_ledger_refuses_stays_claimed_until_it_can_post(
    database_url: str,
) -> None:
    """A frozen merchant wallet refuses the capture (nothing moves). The claim stays, as
    a dispute's claimed outcome does: the merchant asked for 600, which recovery captures
    once the wallet is thawed (or the merchant voids, or the hold expires)."""
    with World(database_url) as world:
        ann, shop, payment_id = _authorized(world)
        wallets = world.client.get(f"/v1/merchants/{shop}/wallets", headers=world.api).json()
        [usd] = [item for item in wallets["items"] if item["currency"] == "USD"]

        world.set_wallet_status(usd["id"], AccountStatus.FROZEN)
        problem(_capture(world, payment_id, 600), 409, "account_frozen")
        assert world.wallet(ann)["held"] == 1_000
        world.resume_interrupted()  # still refused: logged, retried next sweep
        assert world.payment(payment_id)["state"] == "authorized"
        problem(_capture(world, payment_id, 500), 409, "capture_in_progress")
        world.set_wallet_status(usd["id"], AccountStatus.ACTIVE)
        world.resume_interrupted()
        _captured_at_the_first_price(world, ann, shop, payment_id)

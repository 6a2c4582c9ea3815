"""Fees on refunds: the refunds of a capture return its proportional fees pro rata and, in
total, exactly that proportional part — never a minor unit more, even when a refund priced
before others fails afterwards (here: rejected in review)."""

from __future__ import annotations

from typing import Any

from payments.payments_support import User, World
from payments.risk_support import REVIEW, install, resolve

CAPTURED = 30_000
PROPORTIONAL = CAPTURED // 100  # the 1% part of the test quoter's capture fee (1% + 10)


def _captured(world: World, user: User, shop: str, amount: int) -> str:
    created = world.client.post(
        "/v1/payments",
        json={"merchant_id": shop, "amount": amount, "currency": "USD", "capture": "automatic"},
        headers=world.api,
    )
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    authorized = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=user.auth)
    assert authorized.status_code == 200, authorized.text
    assert world.payment(payment_id)["state"] == "captured"
    return payment_id


def _refund(world: World, payment_id: str, amount: int) -> Any:
    return world.client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": amount}, headers=world.api
    )


def test_a_failed_refund_does_not_make_the_others_return_more_than_the_fees(
    database_url: str,
) -> None:
    with World(database_url) as world:
        install(world)
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 40_000)
        _captured(world, ann, shop, 1_000)  # so the merchant can refund the whole capture
        payment_id = _captured(world, ann, shop, CAPTURED)
        # A refund held for review reserves its amount (and its fee return) first...
        held = _refund(world, payment_id, REVIEW)
        assert held.status_code == 202, held.text
        held_refund = held.json()["refunds"][-1]
        assert held_refund["fee_returned"] == str(PROPORTIONAL * REVIEW // CAPTURED)
        # ...a small refund is priced after it: floor(300*9101/30000) - floor(300*9002/30000)
        small = _refund(world, payment_id, 99)
        assert small.status_code == 201, small.text
        assert small.json()["refunds"][-1]["fee_returned"] == "1"
        # ...then the held one is rejected: it returns nothing after all.
        resolve(world, held_refund["id"], approve=False)
        rest = _refund(world, payment_id, CAPTURED - 99)
        assert rest.status_code == 201, rest.text
        payment = world.payment(payment_id)
        assert payment["state"] == "refunded"
        succeeded = [row for row in payment["refunds"] if row["state"] == "succeeded"]
        assert sum(int(row["fee_returned"]) for row in succeeded) == PROPORTIONAL
        fee_lines = sum(int(fee["amount"]) for fee in payment["fees"])
        assert fee_lines == CAPTURED // 100 + 10 - PROPORTIONAL  # the fixed 10 is kept
        # The merchant paid back the whole capture and kept paying the fixed part only.
        other_net = 1_000 - (1_000 // 100 + 10)
        assert world.merchant_wallet(shop)["available"] == other_net - 10


def test_refunds_of_a_whole_capture_return_the_proportional_part_exactly(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        _captured(world, ann, shop, 1_000)  # so the merchant can refund the whole capture
        payment_id = _captured(world, ann, shop, 5_000)  # fee 1% + 10 = 60, proportional 50
        returned = []
        for amount in (1_000, 1_500, 2_500):
            response = _refund(world, payment_id, amount)
            assert response.status_code == 201, response.text
            returned.append(response.json()["refunds"][-1]["fee_returned"])
        assert returned == ["10", "15", "25"]
        assert world.payment(payment_id)["state"] == "refunded"

"""Refunds (never beyond what was captured) and disputes (won, lost, short)."""

from __future__ import annotations

from typing import Any

from payments.payments_support import World, problem


def _refund(world: World, payment_id: str, amount: int | None = None) -> Any:
    body = {} if amount is None else {"amount": amount, "reason": "returned"}
    return world.client.post(f"/v1/payments/{payment_id}/refunds", json=body, headers=world.api)


def test_partial_refunds_add_up_and_never_exceed_the_capture(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        payment = world.paid(ann, shop, 5_000)
        bob = world.user()
        world.fund(bob, 1_000)
        world.paid(bob, shop, 1_000)  # so the merchant can refund beyond its net of Ann's
        merchant_before = world.merchant_wallet(shop)["available"]
        first = _refund(world, payment["id"], 1_000).json()
        assert first["state"] == "partially_refunded"
        assert first["refunded_amount"] == "1000"
        problem(_refund(world, payment["id"], 4_001), 422, "refund_exceeds_captured")
        second = _refund(world, payment["id"], 1_500).json()
        assert second["state"] == "partially_refunded"
        last_response = _refund(world, payment["id"])  # the rest
        assert last_response.status_code == 201, last_response.text
        last = last_response.json()
        assert last["state"] == "refunded"
        assert [refund["amount"] for refund in last["refunds"]] == ["1000", "1500", "2500"]
        problem(_refund(world, payment["id"], 1), 409, "invalid_state_transition")
        assert world.wallet(ann)["available"] == 5_000
        # The capture fee (1% + 10) is returned pro rata, all but its fixed 10.
        assert [refund["fee_returned"] for refund in last["refunds"]] == ["10", "15", "25"]
        assert world.merchant_wallet(shop)["available"] == merchant_before - 5_000 + 50
        returns = [int(fee["amount"]) for fee in last["fees"] if fee["rule"] == "fee_return"]
        assert sorted(returns) == [-25, -15, -10]
        fee_steps = [t for t in last["transfers"] if t["step"].startswith("refund:")]
        assert sorted(int(t["amount"]) for t in fee_steps if t["step"].endswith(":fee")) == [
            10,
            15,
            25,
        ]
        world.assert_books()


def test_a_refund_the_merchant_cannot_cover_fails_cleanly(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment = world.paid(ann, shop, 1_000)  # the merchant keeps 1000 - fee
        problem(_refund(world, payment["id"], 1_000), 422, "insufficient_funds")
        after = world.payment(payment["id"])
        assert after["refunded_amount"] == "0"
        assert after["refunds"][0]["state"] == "failed"
        assert after["state"] == "captured"
        assert _refund(world, payment["id"], 500).json()["refunded_amount"] == "500"
        world.assert_books()


def test_refunding_an_uncaptured_payment_is_refused(database_url: str) -> None:
    with World(database_url) as world:
        shop = world.merchant()
        body = {"merchant_id": shop, "amount": 100, "currency": "USD"}
        created = world.client.post("/v1/payments", json=body, headers=world.api).json()
        problem(_refund(world, created["id"], 50), 409, "invalid_state_transition")


def test_a_dispute_won_releases_the_hold(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 2_000)
        payment = world.paid(ann, shop, 2_000)
        net = world.merchant_wallet(shop)["available"]
        opened = world.client.post(
            f"/v1/payments/{payment['id']}/disputes",
            json={"amount": 1_000, "reason": "not received"},
            headers=world.api,
        ).json()
        [dispute] = opened["disputes"]
        assert dispute["state"] == "open" and dispute["held_amount"] == "1000"
        assert world.merchant_wallet(shop) == {
            "available": net - 1_000,
            "pending": 0,
            "held": 1_000,
        }
        evidence = world.client.post(
            f"/v1/disputes/{dispute['id']}/evidence",
            json={"kind": "delivery", "description": "signed for"},
            headers=world.api,
        )
        assert evidence.json()["evidence"][0]["kind"] == "delivery"
        won = world.client.post(
            f"/v1/disputes/{dispute['id']}/resolve", json={"outcome": "won"}, headers=world.api
        ).json()
        assert won["disputes"][0]["state"] == "won"
        assert world.merchant_wallet(shop) == {"available": net, "pending": 0, "held": 0}
        again = world.client.post(
            f"/v1/disputes/{dispute['id']}/resolve", json={"outcome": "lost"}, headers=world.api
        )
        problem(again, 409, "invalid_state_transition")
        world.assert_books()


def test_a_dispute_lost_beyond_the_balance_books_a_chargeback_loss(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 2_000)
        payment = world.paid(ann, shop, 2_000)
        net = world.merchant_wallet(shop)["available"]  # 2000 - fee
        opened = world.client.post(
            f"/v1/payments/{payment['id']}/disputes", json={"amount": 2_000}, headers=world.api
        ).json()
        dispute = opened["disputes"][0]
        assert dispute["held_amount"] == str(net)
        lost = world.client.post(
            f"/v1/disputes/{dispute['id']}/resolve", json={"outcome": "lost"}, headers=world.api
        ).json()
        assert lost["disputes"][0]["state"] == "lost"
        assert world.merchant_wallet(shop) == {"available": 0, "pending": 0, "held": 0}
        assert world.wallet(ann)["available"] == 2_000
        assert world.system("chargeback_losses")["debits_posted"] == 2_000 - net
        world.assert_books()


def test_a_provider_chargeback_of_a_top_up_returns_money_to_clearing(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        sandbox = world.runtime.sandboxes["sandbox_card"]
        dispute_id = sandbox.open_dispute(topped["id"], amount_minor=500)
        world.deliver()
        world.deliver(world.sender.outbox[:])  # nothing waiting: a no-op
        [dispute] = world.payment(topped["id"])["disputes"]
        assert dispute["opened_by"] == "provider" and dispute["held_amount"] == "500"
        sandbox.resolve_dispute(topped["id"], dispute_id=dispute_id, won=False, amount_minor=500)
        notifications = world.sender.take()
        world.deliver(notifications + notifications)  # a duplicate changes nothing
        assert world.payment(topped["id"])["disputes"][0]["state"] == "lost"
        assert world.wallet(ann)["available"] == 500
        clearing = world.system("clearing:sandbox_card")
        assert clearing["debits_posted"] - clearing["credits_posted"] == topped_amount(topped) - 500
        world.assert_books()


def topped_amount(payment: dict[str, Any]) -> int:
    return int(payment["amount"])

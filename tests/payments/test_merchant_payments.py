"""Merchant payments: authorize (a hold), capture all or part, void, auto-capture, and
every invalid transition, each checked by its ledger effect."""

from __future__ import annotations

from typing import Any

from payments.payments_support import User, World, fee_of, internal_id, problem


def _create(world: World, merchant: str, amount: int, **fields: Any) -> dict[str, Any]:
    body = {"merchant_id": merchant, "amount": amount, "currency": "USD", **fields}
    response = world.client.post("/v1/payments", json=body, headers=world.api)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _authorize(world: World, user: User, payment_id: str) -> Any:
    return world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=user.auth)


def _capture(world: World, payment_id: str, amount: int | None = None) -> Any:
    body = {} if amount is None else {"amount": amount}
    return world.client.post(f"/v1/payments/{payment_id}/capture", json=body, headers=world.api)


def _void(world: World, payment_id: str) -> Any:
    return world.client.post(f"/v1/payments/{payment_id}/void", headers=world.api)


def test_authorize_holds_and_a_partial_capture_releases_the_rest(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        payment = _create(world, shop, 6_000, reference="order-1", metadata={"cart": "42"})
        assert payment["state"] == "requires_payment"
        assert payment["metadata"] == {"cart": "42"}
        preview = world.client.get(f"/v1/me/payments/{payment['id']}", headers=ann.auth)
        assert preview.status_code == 200 and preview.json()["amount"] == "6000"
        authorized = _authorize(world, ann, payment["id"]).json()
        assert authorized["state"] == "authorized"
        assert world.wallet(ann) == {"available": 4_000, "pending": 0, "held": 6_000}
        assert world.merchant_wallet(shop)["available"] == 0
        captured = _capture(world, payment["id"], 5_000).json()
        assert captured["state"] == "captured"
        assert captured["captured_amount"] == "5000"
        assert world.wallet(ann) == {"available": 5_000, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 5_000 - fee_of(5_000)
        assert [fee["amount"] for fee in captured["fees"]] == [str(fee_of(5_000))]
        assert [change["to_state"] for change in captured["history"]] == [
            "requires_payment",
            "authorized",
            "captured",
        ]
        stranger = world.user()
        hidden = world.client.get(f"/v1/me/payments/{payment['id']}", headers=stranger.auth)
        problem(hidden, 404, "payment_not_found")
        world.assert_books()


def test_automatic_capture_captures_at_authorization(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 3_000)
        payment = _create(world, shop, 2_000, capture="automatic")
        done = _authorize(world, ann, payment["id"]).json()
        assert done["state"] == "captured"
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 2_000 - fee_of(2_000)
        world.assert_books()


def test_void_releases_the_hold_and_capture_after_void_is_refused(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 3_000)
        payment = _create(world, shop, 2_000)
        problem(_void(world, payment["id"]), 409, "invalid_state_transition")
        _authorize(world, ann, payment["id"])
        assert _void(world, payment["id"]).json()["state"] == "voided"
        assert world.wallet(ann) == {"available": 3_000, "pending": 0, "held": 0}
        problem(_capture(world, payment["id"]), 409, "invalid_state_transition")
        problem(_authorize(world, ann, payment["id"]), 409, "invalid_state_transition")
        assert _void(world, payment["id"]).json()["state"] == "voided"  # a retry
        assert world.merchant_wallet(shop)["available"] == 0
        world.assert_books()


def test_invalid_captures_are_refused_without_moving_money(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 3_000)
        payment = _create(world, shop, 2_000)
        problem(_capture(world, payment["id"]), 409, "invalid_state_transition")
        _authorize(world, ann, payment["id"])
        problem(_capture(world, payment["id"], 2_001), 422, "capture_exceeds_authorized")
        assert _capture(world, payment["id"], 1_500).json()["state"] == "captured"
        assert _capture(world, payment["id"], 1_500).json()["state"] == "captured"  # a retry
        problem(_capture(world, payment["id"], 1_000), 409, "invalid_state_transition")
        problem(_void(world, payment["id"]), 409, "invalid_state_transition")
        assert world.wallet(ann) == {"available": 1_500, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 1_500 - fee_of(1_500)
        world.assert_books()


def test_authorizing_without_enough_money_is_refused(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment = _create(world, shop, 2_000)
        problem(_authorize(world, ann, payment["id"]), 422, "insufficient_funds")
        assert world.payment(payment["id"])["state"] == "requires_payment"
        world.fund(ann, 1_000)
        assert _authorize(world, ann, payment["id"]).json()["state"] == "authorized"
        world.assert_books()


def test_an_expired_payment_cannot_be_authorized(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment = _create(world, shop, 500, expires_in_s=1)
        from billfold.payments.models import Payment

        async def expire() -> None:
            async with world.runtime.unit_of_work.begin() as session:
                row = await session.get(Payment, internal_id(payment["id"]))
                assert row is not None
                row.expires_at = 1

        world.client.portal.call(expire)
        problem(_authorize(world, ann, payment["id"]), 409, "payment_expired")
        assert world.payment(payment["id"])["state"] == "expired"
        assert world.wallet(ann)["held"] == 0
        world.assert_books()


def test_an_expired_authorization_cannot_be_captured(database_url: str) -> None:
    with World(database_url, payments_authorization_hold_s=60) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment = _create(world, shop, 500)
        _authorize(world, ann, payment["id"])
        clock = world.ledger.clock
        from billfold.kit.clock import ManualClock

        world.ledger.clock = ManualClock(start_ns=clock.now_ns() + 61 * 1_000_000_000)
        problem(_capture(world, payment["id"]), 409, "payment_expired")
        assert world.payment(payment["id"])["state"] == "expired"
        world.client.portal.call(world.ledger.expire_pending)
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 0}
        world.assert_books()


def test_bad_merchant_payment_input_is_a_4xx(database_url: str) -> None:
    with World(database_url) as world:
        shop = world.merchant()
        post = world.client.post
        bad = {"merchant_id": shop, "amount": -5, "currency": "USD"}
        problem(post("/v1/payments", json=bad, headers=world.api), 422, "validation_failed")
        other = {"merchant_id": shop, "amount": 5, "currency": "EUR"}
        problem(post("/v1/payments", json=other, headers=world.api), 422, "invalid_merchant")
        ghost = {"merchant_id": "mer_" + "0" * 32, "amount": 5, "currency": "USD"}
        problem(post("/v1/payments", json=ghost, headers=world.api), 404, "merchant_not_found")
        problem(world.client.get("/v1/payments/pay_zz", headers=world.api), 400, "invalid_id")
        missing = world.client.get("/v1/payments/pay_" + "0" * 32, headers=world.api)
        problem(missing, 404, "payment_not_found")


def test_each_state_a_payment_enters_is_an_outbox_event(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        payment = _create(world, shop, 6_000, reference="order-7")
        _authorize(world, ann, payment["id"])
        _capture(world, payment["id"], 5_000)
        refused = _void(world, payment["id"])  # a refused transition emits nothing
        assert refused.status_code == 409, refused.text
        events = world.outbox(payment["id"])
    assert [event_type for event_type, _ in events] == [
        "com.billfold.payment.created.v1",
        "com.billfold.payment.authorized.v1",
        "com.billfold.payment.captured.v1",
    ]
    captured = events[-1][1]
    assert captured["id"] == payment["id"]
    assert (captured["state"], captured["previous_state"]) == ("captured", "authorized")
    assert (captured["amount"], captured["captured_amount"]) == ("6000", "5000")
    assert captured["reference"] == "order-7"


def test_a_tenants_stored_fee_schedule_prices_its_merchant_payments(database_url: str) -> None:
    """The fee engine behind the flows: a schedule saved over the API is what a capture pays."""
    with World(database_url, fees=False) as world:  # the application's own quoter
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        schedule = {"name": "Standard", "rules": [{"name": "all", "tiers": [{"bps": 250}]}]}
        saved = world.client.post("/v1/fee-schedules", json=schedule, headers=world.api)
        assert saved.status_code == 201, saved.text
        payment = _create(world, shop, 4_000, capture="automatic")
        done = _authorize(world, ann, payment["id"]).json()
        assert done["state"] == "captured", done
        assert [(fee["rule"], fee["amount"]) for fee in done["fees"]] == [("all", "100")]
        assert world.merchant_wallet(shop)["available"] == 4_000 - 100  # 2.50% of 40.00
        world.assert_books()

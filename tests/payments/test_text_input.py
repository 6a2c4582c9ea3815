"""Free text a client sends with a payment, merchant, split rule or fee schedule is text
both databases store: a NUL character (which PostgreSQL cannot store) is a 422, never a
server error, and nothing is written."""

from __future__ import annotations

from payments.payments_support import World, problem

NUL = "a\u0000b"


def test_text_with_a_nul_character_is_refused_and_nothing_is_written(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        shop = world.merchant()
        api = world.api
        post = world.client.post
        base = {"merchant_id": shop, "amount": 500, "currency": "USD"}
        problem(
            post("/v1/payments", json={**base, "reference": NUL}, headers=api),
            422,
            "validation_failed",
        )
        merchant = {"legal_name": NUL, "category_code": "5411", "settlement_currency": "USD"}
        problem(post("/v1/merchants", json=merchant, headers=api), 422, "validation_failed")
        merchant = {"legal_name": "Shop", "category_code": "5411", "settlement_currency": "USD"}
        problem(
            post("/v1/merchants", json={**merchant, "fee_schedule": NUL}, headers=api),
            422,
            "validation_failed",
        )
        rule = {"name": NUL, "shares": [{"merchant_id": shop, "bps": 100}]}
        problem(post("/v1/split-rules", json=rule, headers=api), 422, "validation_failed")
        schedule = {"name": NUL, "rules": [{"name": "all", "tiers": [{"bps": 50}]}]}
        problem(post("/v1/fee-schedules", json=schedule, headers=api), 422, "validation_failed")
        assert world.client.get("/v1/fee-schedules", headers=api).json()["items"] == []
        request = {"payer": bob.handle, "amount": 5, "currency": "USD", "note": NUL}
        problem(
            post("/v1/me/money-requests", json=request, headers=ann.auth), 422, "validation_failed"
        )
        # The same requests with ordinary text are accepted.
        created = post("/v1/payments", json={**base, "reference": "order 7"}, headers=api)
        assert created.status_code == 201, created.text
        assert created.json()["reference"] == "order 7"
        rule["name"] = "partners"
        assert post("/v1/split-rules", json=rule, headers=api).status_code == 201


def test_a_refund_or_dispute_reason_with_a_nul_character_is_refused(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 500, "currency": "USD", "capture": "automatic"},
            headers=world.api,
        ).json()
        paid = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        assert paid.status_code == 200, paid.text
        path = f"/v1/payments/{created['id']}"
        refund = world.client.post(
            f"{path}/refunds", json={"amount": 100, "reason": NUL}, headers=world.api
        )
        problem(refund, 422, "validation_failed")
        dispute = world.client.post(
            f"{path}/disputes", json={"amount": 100, "reason": NUL}, headers=world.api
        )
        problem(dispute, 422, "validation_failed")
        payment = world.payment(created["id"])
        assert (payment["refunds"], payment["disputes"]) == ([], [])
        assert payment["refunded_amount"] == "0"

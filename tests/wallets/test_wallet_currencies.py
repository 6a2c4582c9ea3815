"""ISO 4217 in wallets: currencies with 0, 3 and 4 minor units flow through top-ups, limits
and merchant payments in their own minor units; XXX, the code for "no currency involved",
is held by no wallet (`unsupported_currency`), and nothing is opened for it."""

from __future__ import annotations

import pytest

from payments.payments_support import TEST_CARD, World, problem


@pytest.mark.parametrize(
    ("currency", "exponent"), [("JPY", 0), ("ISK", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)]
)
def test_currencies_of_every_exponent_top_up_and_pay_in_minor_units(
    database_url: str, currency: str, exponent: int
) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        topped = world.top_up(ann, 12_345, currency=currency, card=TEST_CARD)
        assert topped.status_code == 201, topped.text
        world.deliver()
        assert world.wallet(ann, currency)["available"] == 12_345
        limits = world.client.get(
            f"/v1/users/{ann.id}/limits", params={"currency": currency}, headers=world.api
        )
        assert limits.status_code == 200, limits.text
        # Tier 1: 1,000 whole units per transfer, in the currency's minor units.
        assert limits.json()["limits"][0]["limit"] == str(1_000 * 10**exponent)
        shop = world.merchant(currency)
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 345, "currency": currency},
            headers=world.api,
        )
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        paid = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
        assert paid.status_code == 200, paid.text
        captured = world.client.post(
            f"/v1/payments/{payment_id}/capture", json={}, headers=world.api
        )
        assert captured.status_code == 200, captured.text
        assert captured.json()["captured_amount"] == "345"
        assert world.wallet(ann, currency)["available"] == 12_000
        assert world.merchant_wallet(shop, currency)["available"] == 345


def test_xxx_no_currency_is_held_by_no_wallet(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        topped = world.top_up(ann, 1_000, currency="XXX", card=TEST_CARD)
        body = problem(topped, 422, "unsupported_currency")
        assert body["currency"] == "XXX"
        assert world.sender.take() == []
        assert world.client.get("/v1/me/wallets", headers=ann.auth).json() == {"items": []}
        merchant = {"legal_name": "Shop", "category_code": "5411", "settlement_currency": "XXX"}
        created = world.client.post("/v1/merchants", json=merchant, headers=world.api)
        problem(created, 422, "unsupported_currency")
        chart = world.client.get(
            "/v1/system-accounts", params={"currency": "XXX"}, headers=world.api
        )
        problem(chart, 422, "unsupported_currency")

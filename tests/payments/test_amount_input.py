"""What a payment request may send as an amount, and refusals that must come before any
money moves: amounts are minor units as a JSON integer or a string of digits (README, *The
ledger over HTTP*), never a float, and a top-up whose fees would take the whole amount is
refused (`fees_exceed_amount`) before the provider is charged."""

from __future__ import annotations

import json
import re

import pytest
from httpx import Response

from payments.payments_support import TEST_CARD, World, fee_of, problem


def _top_up_raw(world: World, token: str, amount_json: str) -> Response:
    body = (
        '{"amount": ' + amount_json + ', "currency": "USD", "method": "card",'
        ' "instrument": "' + TEST_CARD + '"}'
    )
    return world.client.post(
        "/v1/me/top-ups",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "amount_json",
    [
        "1000.0",  # a float, even a whole one
        "1e3",
        "9007199254740993.0",  # parsed as a double it would become ...992
        '"1000.0"',  # a decimal string: 1000 minor units or 10.00?
        '" 1000"',
        '"1000 "',
        '"1_000"',
        '"+1000"',
        '"01000"',  # leading zeros: the document's pattern has none
        '"0"',
        '"4611686018427387905"',  # 2^62 + 1
        "true",
        "null",
    ],
)
def test_an_amount_that_is_not_an_integer_or_digit_string_is_refused(
    database_url: str, amount_json: str
) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        response = _top_up_raw(world, ann.token, amount_json)
        problem(response, 422, "validation_failed")
        assert world.sender.take() == []
        wallets = world.client.get("/v1/me/wallets", headers=ann.auth).json()["items"]
        assert wallets == []


def test_an_amount_may_be_a_json_integer_or_a_digit_string(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        for amount_json in ("1000", '"1000"'):
            response = _top_up_raw(world, ann.token, amount_json)
            assert response.status_code == 201, response.text
            assert response.json()["amount"] == "1000"
        world.deliver()
        assert world.wallet(ann)["available"] == 2_000


def test_the_document_gives_the_amount_string_exactly_as_it_is_read(database_url: str) -> None:
    """The pattern was `^[0-9]{1,19}$`: "0" and 19-digit strings past 2^62 were valid to
    the document and refused by the API (schemathesis: positive_data_acceptance)."""
    with World(database_url, fees=False) as world:
        document = world.client.get("/openapi.json").json()
    amount = document["components"]["schemas"]["TopUpCreate"]["properties"]["amount"]
    text = next(option for option in amount["anyOf"] if option["type"] == "string")
    pattern = re.compile(text["pattern"])
    for value in ("1", "1000", str(2**62)):
        assert pattern.fullmatch(value), value
    for value in ("0", "01", str(2**62 + 1), "9" * 19):
        assert pattern.fullmatch(value) is None, value


def test_capture_and_refund_amounts_refuse_floats(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 3_000, "currency": "USD"},
            headers=world.api,
        ).json()
        authorized = world.client.post(
            f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth
        )
        assert authorized.status_code == 200, authorized.text
        path = f"/v1/payments/{created['id']}"
        headers = {**world.api, "Content-Type": "application/json"}
        capture = world.client.post(
            f"{path}/capture", content='{"amount": 2000.0}', headers=headers
        )
        problem(capture, 422, "validation_failed")
        assert world.payment(created["id"])["state"] == "authorized"
        captured = world.client.post(f"{path}/capture", json={"amount": "2000"}, headers=world.api)
        assert captured.status_code == 200, captured.text
        refund = world.client.post(f"{path}/refunds", content='{"amount": "5.0"}', headers=headers)
        problem(refund, 422, "validation_failed")
        assert world.payment(created["id"])["refunded_amount"] == "0"


def test_a_top_up_whose_fees_take_the_whole_amount_is_refused_before_the_charge(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        assert fee_of(10) == 10
        refused = world.top_up(ann, 10)
        body = problem(refused, 422, "fees_exceed_amount")
        assert body["fees"] == "10"
        # Nothing was charged, held or recorded: no notification will ever come.
        assert world.sender.take() == []
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert world.client.get("/v1/me/wallets", headers=ann.auth).json()["items"] == []
        # One minor unit more leaves something after the fee: accepted and settled.
        accepted = world.top_up(ann, 11)
        assert accepted.status_code == 201, accepted.text
        world.deliver()
        payment = world.payment(accepted.json()["id"])
        assert payment["state"] == "succeeded", payment
        assert world.wallet(ann)["available"] == 11 - fee_of(11)
        assert json.dumps(payment["fees"]).count('"amount": "10"') == 1


def test_a_merchant_payment_whose_fees_take_the_whole_amount_is_refused_when_created(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        body = {"merchant_id": shop, "amount": 10, "currency": "USD", "capture": "automatic"}
        refused = world.client.post("/v1/payments", json=body, headers=world.api)
        problem(refused, 422, "fees_exceed_amount")
        # Before, it was created, and the payer's authorization answered 422 while it held
        # the money (authorized, the automatic capture refused).
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 0}
        created = world.client.post(
            "/v1/payments", json={**body, "amount": 11}, headers=world.api
        ).json()
        paid = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        assert paid.status_code == 200, paid.text
        assert world.payment(created["id"])["state"] == "captured"
        assert world.merchant_wallet(shop)["available"] == 11 - fee_of(11)

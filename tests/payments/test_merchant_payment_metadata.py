"""A merchant payment's metadata is bounded in its keys as in its values and their count:
a key longer than the bound is 422 `validation_failed` and no payment is made."""

from __future__ import annotations

from httpx import Response

from billfold.payments.schemas import METADATA_KEY_LENGTH_MAX
from payments.payments_support import World, problem


def test_a_metadata_key_past_the_bound_is_refused_and_makes_no_payment(
    database_url: str,
) -> None:
    """Keys were unbounded: a 5,000-character key (or twenty of them, up to the body
    limit) was stored with the payment and shown on every read."""
    with World(database_url) as world:
        shop = world.merchant()
        longest = "k" * METADATA_KEY_LENGTH_MAX

        def create(key: str) -> Response:
            body = {"merchant_id": shop, "amount": 1_000, "currency": "USD"}
            return world.client.post(
                "/v1/payments", json={**body, "metadata": {key: "v"}}, headers=world.api
            )

        refused = problem(create(longest + "k"), 422, "validation_failed")
        assert [error["loc"][:2] for error in refused["errors"]] == [["body", "metadata"]]
        made = create(longest)
        assert made.status_code == 201, made.text
        assert made.json()["metadata"] == {longest: "v"}

"""Split payments (multi-level revenue sharing) and limits by KYC tier."""

from __future__ import annotations

import uuid
from typing import Any

from billfold.wallets.models import Merchant
from payments.payments_support import World, fee_of, problem


def _rule(world: World, shares: list[tuple[str, int]], levels: int = 1) -> str:
    body = {
        "name": "revenue share",
        "shares": [{"merchant_id": merchant, "bps": bps} for merchant, bps in shares],
        "levels": levels,
    }
    response = world.client.post("/v1/split-rules", json=body, headers=world.api)
    assert response.status_code == 201, response.text
    rule: str = response.json()["id"]
    return rule


def _set_merchant_rule(world: World, merchant: str, rule: str) -> None:
    async def update() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            row = await session.get(Merchant, uuid.UUID(hex=merchant[4:]))
            assert row is not None
            row.split_rule_id = uuid.UUID(hex=rule[4:])

    world.client.portal.call(update)


def test_a_split_payment_shares_the_capture_atomically_over_two_levels(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        platform, partner, sub = world.merchant(), world.merchant(), world.merchant()
        _set_merchant_rule(world, partner, _rule(world, [(sub, 5_000)]))
        rule = _rule(world, [(platform, 1_000), (partner, 2_000)], levels=2)
        world.fund(ann, 10_000)
        shop = world.merchant()
        body: dict[str, Any] = {
            "merchant_id": shop,
            "amount": 10_000,
            "currency": "USD",
            "capture": "automatic",
            "split_rule_id": rule,
        }
        created = world.client.post("/v1/payments", json=body, headers=world.api).json()
        done = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        assert done.json()["state"] == "captured", done.text
        net = 10_000 - fee_of(10_000)
        partner_share = net * 2 // 10
        assert world.merchant_wallet(platform)["available"] == net // 10
        assert world.merchant_wallet(partner)["available"] == partner_share - partner_share // 2
        assert world.merchant_wallet(sub)["available"] == partner_share // 2
        assert world.merchant_wallet(shop)["available"] == net - net // 10 - partner_share
        splits = [t for t in done.json()["transfers"] if t["step"].startswith("split:")]
        assert len(splits) == 3
        world.assert_books()


def test_bad_split_rules_are_refused(database_url: str) -> None:
    with World(database_url) as world:
        shop = world.merchant()
        over = {"name": "x", "shares": [{"merchant_id": shop, "bps": 6_000}] * 2}
        response = world.client.post("/v1/split-rules", json=over, headers=world.api)
        problem(response, 422, "invalid_split_rule")
        ghost = {"name": "x", "shares": [{"merchant_id": "mer_" + "0" * 32, "bps": 10}]}
        response = world.client.post("/v1/split-rules", json=ghost, headers=world.api)
        problem(response, 422, "invalid_split_rule")
        body = {
            "merchant_id": shop,
            "amount": 5,
            "currency": "USD",
            "split_rule_id": "spl_" + "0" * 32,
        }
        response = world.client.post("/v1/payments", json=body, headers=world.api)
        problem(response, 422, "invalid_split_rule")


def test_limits_follow_the_kyc_tier(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 500_000)
        send = {"recipient": bob.handle, "currency": "USD"}

        def p2p(amount: int) -> Any:
            return world.client.post(
                "/v1/me/p2p", json={**send, "amount": amount}, headers=ann.auth
            )

        assert problem(p2p(100_001), 422, "limit_exceeded")["window"] == "per_transaction"
        for _ in range(2):
            assert p2p(100_000).status_code == 201
        assert problem(p2p(60_000), 422, "limit_exceeded")["window"] == "daily"
        tier = world.client.put(f"/v1/users/{ann.id}/kyc-tier", json={"tier": 2}, headers=world.api)
        assert tier.status_code == 200, tier.text
        assert p2p(60_000).status_code == 201
        zero = world.client.put(f"/v1/users/{bob.id}/kyc-tier", json={"tier": 0}, headers=world.api)
        assert zero.status_code == 200
        withdraw = {
            "amount": 10_001,
            "currency": "USD",
            "method": "bank_transfer",
            "destination": "DE89370400440532013000",
        }
        refused = world.client.post("/v1/me/withdrawals", json=withdraw, headers=bob.auth)
        assert problem(refused, 422, "limit_exceeded")["window"] == "per_transaction"
        bad = world.client.put(f"/v1/users/{bob.id}/kyc-tier", json={"tier": 4}, headers=world.api)
        problem(bad, 422, "validation_failed")
        assert world.wallet(bob)["available"] == 260_000
        world.assert_books()

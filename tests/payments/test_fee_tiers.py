"""Fee tiers by monthly volume: the volume a payment is priced with is what its merchant
(or, without a merchant, the tenant) had captured this calendar month (UTC) before it,
kept in a counter as payments reach their payee."""

from __future__ import annotations

import datetime
from typing import Any

from billfold.payments.models import MonthlyVolume
from billfold.payments.service import month_of
from billfold.wallets.service import ledger_tenant_of
from payments.payments_support import World


def _schedule(world: World, merchant_id: str) -> None:
    body = {
        "merchant_id": merchant_id,
        "name": "volume discount",
        "rules": [
            {
                "name": "wallet_usd",
                "method": "wallet",
                "currency": "USD",
                "tiers": [
                    {"volume_from_minor": 0, "bps": 200},
                    {"volume_from_minor": 3_000, "bps": 100},
                ],
            }
        ],
    }
    response = world.client.post("/v1/fee-schedules", json=body, headers=world.api)
    assert response.status_code == 201, response.text


def _captured(world: World, payer_token: dict[str, str], shop: str, amount: int) -> Any:
    created = world.client.post(
        "/v1/payments",
        json={"merchant_id": shop, "amount": amount, "currency": "USD", "capture": "automatic"},
        headers=world.api,
    ).json()
    paid = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=payer_token)
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "captured"
    return paid.json()


def test_crossing_a_volume_tier_boundary_lowers_the_fee(database_url: str) -> None:
    with World(database_url, fees=False) as world:  # the tenant's stored schedules price
        ann, shop, other = world.user(), world.merchant(), world.merchant()
        world.fund(ann, 10_000)
        _schedule(world, shop)
        _schedule(world, other)
        first = _captured(world, ann.auth, shop, 2_000)
        assert [(f["rule"], f["amount"]) for f in first["fees"]] == [("wallet_usd_tier_1", "40")]
        second = _captured(world, ann.auth, shop, 1_000)  # volume 2000 before it: tier 1
        assert [(f["rule"], f["amount"]) for f in second["fees"]] == [("wallet_usd_tier_1", "20")]
        third = _captured(world, ann.auth, shop, 1_000)  # volume 3000: exactly the boundary
        assert [(f["rule"], f["amount"]) for f in third["fees"]] == [("wallet_usd_tier_2", "10")]
        # Another merchant's volume is its own.
        elsewhere = _captured(world, ann.auth, other, 1_000)
        assert [(f["rule"], f["amount"]) for f in elsewhere["fees"]] == [
            ("wallet_usd_tier_1", "20")
        ]
        assert world.merchant_wallet(shop)["available"] == 4_000 - 40 - 20 - 10
        world.assert_books()


def test_only_this_months_volume_counts(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        _schedule(world, shop)
        last_month = (
            datetime.datetime.now(datetime.UTC).replace(day=1) - datetime.timedelta(days=1)
        ).strftime("%Y-%m")

        async def seed() -> None:
            async with world.runtime.unit_of_work.begin() as session:
                session.add(
                    MonthlyVolume(
                        ledger_tenant_id=ledger_tenant_of(world.tenant_id, "test"),
                        scope=shop.removeprefix("mer_"),
                        currency="USD",
                        month=last_month,
                        shard=0,
                        volume=1_000_000,
                    )
                )

        world.client.portal.call(seed)
        paid = _captured(world, ann.auth, shop, 1_000)
        assert [(f["rule"], f["amount"]) for f in paid["fees"]] == [("wallet_usd_tier_1", "20")]
        world.assert_books()


def test_months_are_calendar_months_in_utc() -> None:
    moment = datetime.datetime(2026, 1, 31, 23, 59, 59, tzinfo=datetime.UTC)
    assert month_of(int(moment.timestamp()) * 1_000_000_000) == "2026-01"
    assert month_of((int(moment.timestamp()) + 1) * 1_000_000_000) == "2026-02"

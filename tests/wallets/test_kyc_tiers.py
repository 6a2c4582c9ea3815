"""Setting a KYC tier (`PUT /v1/users/{id}/kyc-tier`) is idempotent and the last setting
wins: two first settings of one user at once both succeed, neither fails on the key."""

from __future__ import annotations

import asyncio
import time

from billfold.wallets.repository import WalletRepository
from payments.payments_support import World, internal_id

# Long enough for the second setting to look for the user's row, find the first's
# uncommitted one absent and wait on it.
OVERLAP_S = 0.3


def test_two_first_settings_at_once_both_succeed_and_the_last_wins(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        user_id = internal_id(ann.id)
        unit_of_work = world.runtime.unit_of_work

        async def set_tier(tier: int) -> None:
            async with unit_of_work.begin() as session:
                await WalletRepository(session).set_tier(
                    tenant_id=world.tenant_id, user_id=user_id, tier=tier, now_ns=time.time_ns()
                )

        async def race() -> None:
            async with unit_of_work.begin() as session:
                await WalletRepository(session).set_tier(
                    tenant_id=world.tenant_id, user_id=user_id, tier=0, now_ns=time.time_ns()
                )
                second = asyncio.create_task(set_tier(3))
                await asyncio.sleep(OVERLAP_S)  # still uncommitted while the second runs
            await second

        world.client.portal.call(race)
        limits = world.client.get(
            f"/v1/users/{ann.id}/limits", params={"currency": "USD"}, headers=world.api
        )
        assert limits.status_code == 200, limits.text
        assert limits.json()["tier"] == 3
        assert limits.json()["limits"][0]["tier_limit"] == "10000000"  # tier 3, USD

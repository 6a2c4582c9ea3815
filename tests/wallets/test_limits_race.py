"""Concurrent payments from one wallet never pass a limit together: the limit check and the
payment it admits are serialized per holder (PostgreSQL: an advisory lock held until the
payment is recorded; SQLite: the writer lock), so exactly the allowed number pass."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import p2p, withdrawals
from billfold.wallets.repository import holder_lock_key
from payments.payments_support import User, World

# Tier 0 in USD: 10_000 per transfer, 20_000 a day.
DAILY = 20_000
AMOUNT = 6_000
ATTEMPTS = 16


def _id(public_id: str) -> uuid.UUID:
    return uuid.UUID(hex=public_id.partition("_")[2])


def _tier_zero(world: World, user: User) -> None:
    response = world.client.put(
        f"/v1/users/{user.id}/kyc-tier", json={"tier": 0}, headers=world.api
    )
    assert response.status_code == 200, response.text


def _outcomes(results: list[Any]) -> Counter[str]:
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, BillfoldError)
    ]
    assert unexpected == []
    return Counter(r.code if isinstance(r, BillfoldError) else "ok" for r in results)


def test_concurrent_payments_never_pass_the_daily_limit_together(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 100_000)
        _tier_zero(world, ann)
        sender = _id(ann.id)

        def send() -> Awaitable[uuid.UUID]:
            return p2p.send_p2p(
                world.runtime,
                tenant_id=world.tenant_id,
                mode=Mode.TEST,
                sender_id=sender,
                recipient=bob.handle,
                amount=AMOUNT,
                currency="USD",
            )

        def withdraw() -> Awaitable[uuid.UUID]:
            return withdrawals.start_withdrawal(
                world.runtime,
                tenant_id=world.tenant_id,
                mode=Mode.TEST,
                user_id=sender,
                amount=AMOUNT,
                currency="USD",
                method="bank_transfer",
                destination="DE89370400440532013000",
            )

        async def race() -> list[Any]:
            attempts = [send() if index % 2 else withdraw() for index in range(ATTEMPTS)]
            return list(await asyncio.gather(*attempts, return_exceptions=True))

        outcomes = _outcomes(world.client.portal.call(race))
        allowed = DAILY // AMOUNT
        assert outcomes == {"ok": allowed, "limit_exceeded": ATTEMPTS - allowed}
        world.deliver()  # the sandbox confirms the payouts
        spent = 100_000 - world.wallet(ann)["available"]
        assert spent == allowed * AMOUNT <= DAILY
        world.assert_books()


def test_holders_lock_keys_are_signed_64_bit_and_distinct() -> None:
    keys = {holder_lock_key(uuid.uuid4()) for _ in range(1_000)}
    assert len(keys) == 1_000
    assert all(-(2**63) <= key < 2**63 for key in keys)
    holder = uuid.uuid4()
    assert holder_lock_key(holder) == holder_lock_key(uuid.UUID(bytes=holder.bytes))

"""Concurrent payments never overdraw a wallet; concurrent refunds never exceed the capture;
racing duplicate notifications and re-driven steps never move money twice."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import merchant, p2p, recovery, refunds
from billfold.payments.flows.notifications import receive_notification
from billfold.payments.flows.topups import settle_top_up
from billfold.payments.models import Payment
from payments.payments_support import CrashError, World, crashing, internal_id


def _outcomes(results: list[Any]) -> tuple[int, list[str]]:
    succeeded = sum(1 for result in results if not isinstance(result, BaseException))
    codes = [r.code for r in results if isinstance(r, BillfoldError)]
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, BillfoldError)
    ]
    assert unexpected == []
    return succeeded, codes


def test_concurrent_p2p_payments_never_overdraw_the_wallet(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)

        succeeded, codes = _outcomes(world.race_p2p(ann, bob, amount=100, count=16))
        assert succeeded == 10
        assert codes == ["insufficient_funds"] * 6
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert world.wallet(bob)["available"] == 1_000
        world.assert_books()


def test_concurrent_authorizations_never_overdraw_the_wallet(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        ids = []
        for _ in range(8):
            body = {"merchant_id": shop, "amount": 300, "currency": "USD"}
            ids.append(world.client.post("/v1/payments", json=body, headers=world.api).json()["id"])

        async def race() -> list[Any]:
            holds = [
                merchant.authorize(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    user_id=internal_id(ann.id),
                    payment_id=internal_id(payment_id),
                )
                for payment_id in ids
            ]
            return list(await asyncio.gather(*holds, return_exceptions=True))

        succeeded, codes = _outcomes(world.client.portal.call(race))
        assert succeeded == 3 and codes == ["insufficient_funds"] * 5
        assert world.wallet(ann) == {"available": 100, "pending": 0, "held": 900}
        world.assert_books()


def test_concurrent_refunds_never_exceed_the_capture(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, shop = world.user(), world.user(), world.merchant()
        world.fund(ann, 1_000)
        world.fund(bob, 5_000)
        for payer, amount in ((bob, 5_000), (ann, 1_000)):
            body = {
                "merchant_id": shop,
                "amount": amount,
                "currency": "USD",
                "capture": "automatic",
            }
            created = world.client.post("/v1/payments", json=body, headers=world.api).json()
            world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=payer.auth)
        payment_id = internal_id(created["id"])

        async def race() -> list[Any]:
            attempts = [
                refunds.refund(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    payment_id=payment_id,
                    amount=300,
                    reason=None,
                )
                for _ in range(6)
            ]
            return list(await asyncio.gather(*attempts, return_exceptions=True))

        succeeded, codes = _outcomes(world.client.portal.call(race))
        assert succeeded == 3
        assert set(codes) <= {"invalid_state_transition", "refund_exceeds_captured"}
        assert world.wallet(ann)["available"] == 900
        assert world.payment(created["id"])["refunded_amount"] == "900"
        world.assert_books()


def test_racing_duplicate_notifications_move_money_once(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [notification] = world.sender.take()

        async def race() -> list[Any]:
            deliveries = [
                receive_notification(
                    world.runtime,
                    provider=notification.provider,
                    body=notification.body,
                    headers={
                        "content-type": "application/json",  # as the sender posts it
                        **{k.lower(): v for k, v in notification.headers.items()},
                    },
                )
                for _ in range(4)
            ]
            return list(await asyncio.gather(*deliveries))

        stored = world.client.portal.call(race)
        assert len({receipt.id for receipt in stored}) == 1  # stored once
        assert sorted(receipt.duplicate for receipt in stored) == [False, True, True, True]
        world.process_inbound([f"ntf_{stored[0].id.hex}"])
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - 60
        world.assert_books()


def test_a_step_redriven_after_a_lost_state_update_moves_money_once(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        world.deliver()
        assert world.wallet(ann)["available"] == 5_000 - 60

        async def forget_and_redrive() -> str:
            # As if the process died after the ledger applied the step, before the state
            # update committed: the payment still says processing.
            async with world.runtime.unit_of_work.begin() as session:
                row = await session.get(Payment, internal_id(payment["id"]))
                assert row is not None
                row.state = "processing"
            return await settle_top_up(world.runtime, internal_id(payment["id"]), reason="redrive")

        assert world.client.portal.call(forget_and_redrive) == "applied"
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - 60
        assert world.system("fee_revenue")["credits_posted"] == 60
        world.assert_books()


@pytest.mark.parametrize("after_ledger", [True, False], ids=["after_ledger", "before_ledger"])
def test_a_p2p_interrupted_by_a_crash_is_resumed_once(
    database_url: str, after_ledger: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        real = p2p.apply_steps
        monkeypatch.setattr(p2p, "apply_steps", crashing(real, after_ledger=after_ledger))

        async def send() -> None:
            with pytest.raises(CrashError):
                await p2p.send_p2p(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    sender_id=internal_id(ann.id),
                    recipient=bob.handle,
                    amount=400,
                    currency="USD",
                )

        world.client.portal.call(send)
        assert world.wallet(bob)["available"] == (400 if after_ledger else 0)
        monkeypatch.setattr(p2p, "apply_steps", real)
        resume = functools.partial(recovery.resume_interrupted, world.runtime, older_than_s=0)
        assert world.client.portal.call(resume) >= 1
        assert world.wallet(bob)["available"] == 400
        assert world.wallet(ann)["available"] == 600
        world.assert_books()


def test_a_refund_interrupted_by_a_crash_is_resumed_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD", "capture": "automatic"}
        created = world.client.post("/v1/payments", json=body, headers=world.api).json()
        world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        real = refunds.apply_steps
        monkeypatch.setattr(refunds, "apply_steps", crashing(real, after_ledger=True))

        async def refund() -> None:
            with pytest.raises(CrashError):
                await refunds.refund(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    payment_id=internal_id(created["id"]),
                    amount=300,
                    reason=None,
                )

        world.client.portal.call(refund)
        assert world.payment(created["id"])["refunds"][0]["state"] == "pending"
        monkeypatch.setattr(refunds, "apply_steps", real)
        world.resume_interrupted()
        after = world.payment(created["id"])
        assert after["refunds"][0]["state"] == "succeeded"
        assert after["state"] == "partially_refunded" and after["refunded_amount"] == "300"
        assert world.wallet(ann)["available"] == 300
        world.assert_books()

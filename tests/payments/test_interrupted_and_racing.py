"""Money requests answered twice at once, and flows a crash interrupted between the ledger
and their record (a capture, a dispute's opening, a money request's payment): each ends
with the money moved once, the payment's record matching the ledger, and the books
balanced."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import disputes, merchant, p2p, topups
from billfold.payments.models import Payment
from payments.payments_support import CrashError, User, World, crashing, internal_id, three_percent


def _request(world: World, *, payee: User, payer: User, amount: int) -> uuid.UUID:
    created = world.client.post(
        "/v1/me/money-requests",
        json={"payer": payer.handle, "amount": amount, "currency": "USD"},
        headers=payee.auth,
    )
    assert created.status_code == 201, created.text
    return internal_id(created.json()["id"])


def _send(world: World, sender: User, recipient: User, amount: int) -> None:
    world.client.portal.call(
        functools.partial(
            p2p.send_p2p,
            world.runtime,
            tenant_id=world.tenant_id,
            mode=Mode.TEST,
            sender_id=internal_id(sender.id),
            recipient=recipient.handle,
            amount=amount,
            currency="USD",
        )
    )


def test_a_money_request_approved_concurrently_is_paid_once(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        request_id = _request(world, payee=bob, payer=ann, amount=100)

        async def race() -> list[Any]:
            approvals = [
                p2p.approve_request(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    user_id=internal_id(ann.id),
                    request_id=request_id,
                )
                for _ in range(6)
            ]
            return list(await asyncio.gather(*approvals, return_exceptions=True))

        results = world.client.portal.call(race)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, BillfoldError) for r in refused), refused
        assert len(results) - len(refused) == 1
        assert {r.code for r in refused if isinstance(r, BillfoldError)} == {
            "invalid_state_transition"
        }
        assert world.wallet(bob)["available"] == 100
        assert world.wallet(ann)["available"] == 900


def test_a_request_whose_payment_a_crash_interrupted_is_not_paid_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        request_id = _request(world, payee=bob, payer=ann, amount=100)
        approve = functools.partial(
            p2p.approve_request,
            world.runtime,
            tenant_id=world.tenant_id,
            mode=Mode.TEST,
            user_id=internal_id(ann.id),
            request_id=request_id,
        )
        real = p2p.apply_steps
        monkeypatch.setattr(
            p2p, "apply_steps", crashing(real, after_ledger=True, first_step="transfer")
        )
        with pytest.raises(CrashError):
            world.client.portal.call(approve)
        monkeypatch.setattr(p2p, "apply_steps", real)
        # The payment exists (the ledger moved its money): approving again is refused.
        with pytest.raises(BillfoldError) as refused:
            world.client.portal.call(approve)
        assert refused.value.code == "invalid_state_transition"
        world.resume_interrupted()
        assert world.wallet(bob)["available"] == 100
        assert world.wallet(ann)["available"] == 900
        shown = world.client.get(
            f"/v1/me/money-requests/req_{request_id.hex}", headers=ann.auth
        ).json()
        assert shown["state"] == "approved"
        assert world.payment(shown["payment_id"])["state"] == "succeeded"


def test_a_capture_interrupted_after_the_ledger_is_recorded_by_recovery(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD", "capture": "manual"}
        payment_id = world.client.post("/v1/payments", json=body, headers=world.api).json()["id"]
        authorized = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
        assert authorized.status_code == 200, authorized.text
        real = merchant.apply_steps
        monkeypatch.setattr(
            merchant, "apply_steps", crashing(real, after_ledger=True, first_step="capture")
        )
        with pytest.raises(CrashError):
            world.client.portal.call(
                functools.partial(
                    merchant.capture,
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    payment_id=internal_id(payment_id),
                    amount=600,
                )
            )
        monkeypatch.setattr(merchant, "apply_steps", real)
        assert world.payment(payment_id)["state"] == "authorized"  # the money moved

        world.lapse_authorization(payment_id)
        world.resume_interrupted()
        world.resume_interrupted()
        after = world.payment(payment_id)
        assert after["state"] == "captured" and after["captured_amount"] == "600"
        assert [fee["amount"] for fee in after["fees"]] == ["16"]
        assert world.wallet(ann) == {"available": 4_400, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 584
        refunded = world.client.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": "100"}, headers=world.api
        )
        assert refunded.status_code == 201, refunded.text
        assert world.wallet(ann)["available"] == 4_500


def test_a_dispute_interrupted_while_opening_is_opened_by_recovery(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD", "capture": "automatic"}
        payment_id = world.client.post("/v1/payments", json=body, headers=world.api).json()["id"]
        world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
        real = disputes.apply_steps
        monkeypatch.setattr(
            disputes, "apply_steps", crashing(real, after_ledger=True, first_step="dispute:")
        )
        with pytest.raises(CrashError):
            world.client.post(
                f"/v1/payments/{payment_id}/disputes", json={"amount": "400"}, headers=world.api
            )
        monkeypatch.setattr(disputes, "apply_steps", real)
        [dispute] = world.payment(payment_id)["disputes"]
        assert dispute["state"] == "opening"
        assert world.merchant_wallet(shop)["held"] == 400
        world.resume_interrupted()
        [dispute] = world.payment(payment_id)["disputes"]
        assert dispute["state"] == "open" and dispute["held_amount"] == "400"
        won = world.client.post(
            f"/v1/disputes/{dispute['id']}/resolve", json={"outcome": "won"}, headers=world.api
        )
        assert won.status_code == 200, won.text
        assert world.merchant_wallet(shop) == {"available": 1_000, "pending": 0, "held": 0}
        assert world.wallet(ann)["available"] == 0


def test_a_p2p_resumed_after_the_fees_changed_is_recorded_as_the_ledger_moved_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 2_000)
        real = p2p.apply_steps
        monkeypatch.setattr(
            p2p, "apply_steps", crashing(real, after_ledger=True, first_step="transfer")
        )
        with pytest.raises(CrashError):
            _send(world, ann, bob, 1_000)
        monkeypatch.setattr(p2p, "apply_steps", real)
        # The schedule (or the month's volume tier) changed before recovery re-drove it.
        world.runtime.fee_quoter = three_percent
        world.resume_interrupted()

        async def sent() -> list[Payment]:
            async with world.runtime.unit_of_work.read() as session:
                rows = await session.execute(
                    select(Payment).where(
                        Payment.kind == "p2p", Payment.payer_user_id == internal_id(ann.id)
                    )
                )
                return list(rows.scalars())

        [payment] = world.client.portal.call(sent)
        shown = world.payment(f"pay_{payment.id.hex}")
        assert shown["state"] == "succeeded", shown
        assert [fee["amount"] for fee in shown["fees"]] == ["20"]  # 1% + 10, as charged
        assert world.wallet(ann)["available"] == 2_000 - 1_000 - 20
        assert world.wallet(bob)["available"] == 1_000


def test_a_refused_p2p_shows_no_fees(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 500)
        with pytest.raises(BillfoldError) as refused:
            _send(world, ann, bob, 1_000)
        assert refused.value.code == "insufficient_funds"

        async def failed() -> Payment:
            async with world.runtime.unit_of_work.read() as session:
                rows = await session.execute(
                    select(Payment).where(
                        Payment.kind == "p2p", Payment.payer_user_id == internal_id(ann.id)
                    )
                )
                return rows.scalar_one()

        payment = world.client.portal.call(failed)
        shown = world.payment(f"pay_{payment.id.hex}")
        assert shown["state"] == "failed" and shown["fees"] == []
        assert world.wallet(ann)["available"] == 500


def _settle(world: World, payment_id: str) -> str:
    return world.client.portal.call(
        functools.partial(
            topups.settle_top_up, world.runtime, internal_id(payment_id), reason="charge.succeeded"
        )
    )


def test_a_top_up_settlement_interrupted_after_the_ledger_keeps_its_price(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fees are priced once, before the ledger: the provider's notification, arriving
    after the crash and after the schedule changed, settles at the price posted (before, it
    priced again, the ledger refused the different fee, and the top-up stayed
    `processing` with its money moved)."""
    with World(database_url) as world:  # 1% + 10
        ann = world.user()
        payment_id = world.top_up(ann, 5_000).json()["id"]
        real = topups.apply_steps
        monkeypatch.setattr(
            topups, "apply_steps", crashing(real, after_ledger=True, first_step="settle")
        )
        with pytest.raises(CrashError):
            _settle(world, payment_id)
        monkeypatch.setattr(topups, "apply_steps", real)
        world.runtime.fee_quoter = three_percent
        world.deliver()  # the provider's charge.succeeded
        settled = world.payment(payment_id)
        assert settled["state"] == "succeeded"
        assert [fee["amount"] for fee in settled["fees"]] == ["60"]
        assert world.wallet(ann) == {"available": 4_940, "pending": 0, "held": 0}
        assert world.system("fee_revenue")["credits_posted"] == 60
        world.assert_books()


def test_a_top_up_that_fails_after_its_fees_were_priced_shows_none(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment_id = world.top_up(ann, 5_000).json()["id"]

        monkeypatch.setattr(topups, "apply_steps", crashing(topups.apply_steps, after_ledger=False))
        with pytest.raises(CrashError):
            _settle(world, payment_id)  # priced and recorded, nothing posted
        monkeypatch.undo()
        failed = world.client.portal.call(
            functools.partial(
                topups.fail_top_up, world.runtime, internal_id(payment_id), reason="declined"
            )
        )
        assert failed == "applied"
        shown = world.payment(payment_id)
        assert (shown["state"], shown["fees"]) == ("failed", [])
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        world.assert_books()

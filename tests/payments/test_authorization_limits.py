"""Merchant payment authorizations against the payer's spending limits: the payer is
claimed in the limit check's transaction, so concurrent authorizations see each other; the
spend counts at authorization, not at the payment's creation; a failed hold gives the
limit back; a retried authorization does not count itself twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import merchant, recovery
from billfold.payments.models import Payment
from payments.payments_support import User, World, internal_id, problem

# Tier 1 (the default), USD: 1,000 per transfer, 2,500 a day.
_PER_TRANSFER = 100_000
_DAILY = 250_000


def _merchant_payment(world: World, shop: str, amount: int) -> str:
    body = {"merchant_id": shop, "amount": amount, "currency": "USD"}
    response = world.client.post("/v1/payments", json=body, headers=world.api)
    assert response.status_code == 201, response.text
    payment_id: str = response.json()["id"]
    return payment_id


def _authorize(world: World, user: User, payment_id: str) -> Any:
    return world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=user.auth)


def _p2p(world: World, sender: User, recipient: User, amount: int) -> Any:
    body = {"recipient": recipient.handle, "currency": "USD", "amount": amount}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def _row(world: World, payment_id: str) -> Payment:
    async def read() -> Payment:
        async with world.runtime.unit_of_work.begin() as session:
            row = await session.get(Payment, internal_id(payment_id))
            assert row is not None
            return row

    row: Payment = world.client.portal.call(read)
    return row


def test_concurrent_authorizations_by_one_payer_never_pass_the_daily_limit(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 6 * _PER_TRANSFER)  # enough for all: only the limit stops them
        ids = [_merchant_payment(world, shop, _PER_TRANSFER) for _ in range(6)]

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

        results = world.client.portal.call(race)
        unexpected = [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, BillfoldError)
        ]
        assert unexpected == []
        codes = [r.code for r in results if isinstance(r, BillfoldError)]
        assert len(codes) == 4 and set(codes) == {"limit_exceeded"}, codes
        states = sorted(world.payment(payment_id)["state"] for payment_id in ids)
        assert states == ["authorized"] * 2 + ["requires_payment"] * 4
        assert world.wallet(ann)["held"] == 2 * _PER_TRANSFER
        # The refused ones were never claimed: anyone may still pay them.
        refused = [p for p in ids if world.payment(p)["state"] == "requires_payment"]
        assert all(_row(world, p).payer_user_id is None for p in refused)
        world.assert_books()


def test_an_authorization_counts_on_the_day_it_is_made_not_the_day_of_creation(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, shop = world.user(), world.user(), world.merchant()
        world.fund(ann, 3 * _PER_TRANSFER)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        before_midnight = (int(midnight.timestamp()) - 60) * 1_000_000_000

        async def created_yesterday() -> None:
            async with world.runtime.unit_of_work.begin() as session:
                row = await session.get(Payment, internal_id(payment_id))
                assert row is not None
                row.created_at = row.updated_at = before_midnight

        world.client.portal.call(created_yesterday)
        assert _authorize(world, ann, payment_id).status_code == 200
        row = _row(world, payment_id)
        assert row.spent_at is not None and row.spent_at >= int(midnight.timestamp()) * 10**9
        assert _p2p(world, ann, bob, _PER_TRANSFER).status_code == 201
        refused = problem(_p2p(world, ann, bob, _PER_TRANSFER), 422, "limit_exceeded")
        assert refused["window"] == "daily" and refused["used"] == str(2 * _PER_TRANSFER)
        assert _p2p(world, ann, bob, _DAILY - 2 * _PER_TRANSFER).status_code == 201
        world.assert_books()


def test_a_failed_hold_gives_the_limit_back(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, carl, shop = world.user(), world.user(), world.user(), world.merchant()
        world.fund(ann, _PER_TRANSFER // 2)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        problem(_authorize(world, ann, payment_id), 422, "insufficient_funds")
        row = _row(world, payment_id)
        assert row.payer_user_id is None and row.spent_at is None
        assert row.state == "requires_payment"
        world.fund(ann, 3 * _PER_TRANSFER)
        for amount in (_PER_TRANSFER, _PER_TRANSFER, _DAILY - 2 * _PER_TRANSFER):
            assert _p2p(world, ann, bob, amount).status_code == 201
        # Unclaimed again, so another payer can pay it.
        world.fund(carl, _PER_TRANSFER)
        assert _authorize(world, carl, payment_id).status_code == 200
        assert world.payment(payment_id)["payer"] == carl.id
        world.assert_books()


class _CrashError(Exception):
    """The process dies here."""


def test_a_retried_authorization_does_not_count_itself_twice(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, dan, shop = world.user(), world.user(), world.merchant()
        world.fund(ann, 3 * _PER_TRANSFER)
        world.fund(dan, _PER_TRANSFER)
        first = _merchant_payment(world, shop, _PER_TRANSFER)
        second = _merchant_payment(world, shop, _PER_TRANSFER)
        assert _authorize(world, ann, first).status_code == 200

        async def crash(*_: object) -> None:
            raise _CrashError

        monkeypatch.setattr(merchant, "apply_steps", crash)

        async def interrupted() -> None:
            with pytest.raises(_CrashError):
                await merchant.authorize(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    user_id=internal_id(ann.id),
                    payment_id=internal_id(second),
                )

        world.client.portal.call(interrupted)
        monkeypatch.undo()
        # Claimed before the crash: it counts (2,000 of 2,500 used) and is ann's to retry.
        assert _row(world, second).payer_user_id == internal_id(ann.id)
        assert world.payment(second)["payer"] is None  # not shown before the hold
        problem(_authorize(world, dan, second), 409, "invalid_state_transition")
        third = _merchant_payment(world, shop, _PER_TRANSFER)
        assert problem(_authorize(world, ann, third), 422, "limit_exceeded")["used"] == str(
            2 * _PER_TRANSFER
        )
        # The retry does not count its own claim again (1,000 + 1,000 <= 2,500).
        assert _authorize(world, ann, second).status_code == 200
        assert world.payment(second)["state"] == "authorized"
        assert world.wallet(ann)["held"] == 2 * _PER_TRANSFER
        world.assert_books()


def _crash_authorizing(
    world: World, monkeypatch: pytest.MonkeyPatch, user: User, payment_id: str, *, after: bool
) -> None:
    """Authorize, the process dying just before (or just after) the ledger places the hold."""
    real = merchant.apply_steps

    async def crash(*args: Any) -> None:
        if after:
            await real(*args)
        raise _CrashError

    monkeypatch.setattr(merchant, "apply_steps", crash)

    async def interrupted() -> None:
        with pytest.raises(_CrashError):
            await merchant.authorize(
                world.runtime,
                tenant_id=world.tenant_id,
                mode=Mode.TEST,
                user_id=internal_id(user.id),
                payment_id=internal_id(payment_id),
            )

    world.client.portal.call(interrupted)
    monkeypatch.undo()


def _recover(world: World) -> None:
    world.client.portal.call(lambda: recovery.resume_interrupted(world.runtime, older_than_s=0))


def _claim_of(world: World, payment_id: str) -> tuple[object, ...]:
    row = _row(world, payment_id)
    return (
        row.state,
        row.payer_user_id,
        row.debit_account_id,
        row.spent_at,
        row.authorization_expires_at,
        row.updated_at,
    )


def test_recovery_releases_a_claim_whose_hold_was_never_placed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, carl, shop = world.user(), world.user(), world.user(), world.merchant()
        world.fund(ann, 3 * _PER_TRANSFER)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        _crash_authorizing(world, monkeypatch, ann, payment_id, after=False)
        claimed = _claim_of(world, payment_id)
        assert claimed[1] == internal_id(ann.id)
        # Within the grace period (60 s by default) the claim may still be placing its hold.
        _recover(world)
        assert _claim_of(world, payment_id) == claimed
        world.runtime.claim_grace_s = 0
        _recover(world)
        released = _claim_of(world, payment_id)
        assert released[:4] == ("requires_payment", None, None, None)
        _recover(world)
        assert _claim_of(world, payment_id) == released  # a second round changes nothing
        assert world.payment(payment_id)["history"][-1]["to_state"] == "requires_payment"
        # The payer's whole daily limit is free again, and anyone may pay the payment.
        for amount in (_PER_TRANSFER, _PER_TRANSFER, _DAILY - 2 * _PER_TRANSFER):
            assert _p2p(world, ann, bob, amount).status_code == 201
        world.fund(carl, _PER_TRANSFER)
        assert _authorize(world, carl, payment_id).status_code == 200
        assert world.payment(payment_id)["payer"] == carl.id
        world.assert_books()


def test_recovery_authorizes_a_claim_whose_hold_was_placed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, dan, shop = world.user(), world.user(), world.user(), world.merchant()
        world.fund(ann, 3 * _PER_TRANSFER)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        _crash_authorizing(world, monkeypatch, ann, payment_id, after=True)
        assert _row(world, payment_id).state == "requires_payment"
        assert world.wallet(ann)["held"] == _PER_TRANSFER  # the ledger holds it already
        world.runtime.claim_grace_s = 0
        _recover(world)
        authorized = _claim_of(world, payment_id)
        assert authorized[:2] == ("authorized", internal_id(ann.id))
        assert authorized[4] is not None  # authorization_expires_at, from the hold
        _recover(world)
        assert _claim_of(world, payment_id) == authorized  # a second round changes nothing
        shown = world.payment(payment_id)
        assert shown["payer"] == ann.id
        assert [h["to_state"] for h in shown["history"]].count("authorized") == 1
        assert [t["step"] for t in shown["transfers"]] == ["hold"]
        # Still counted: with a 1,000 transfer, 2,000 of 2,500 are used.
        assert _p2p(world, ann, bob, _PER_TRANSFER).status_code == 201
        over = _DAILY - 2 * _PER_TRANSFER + 1
        refused = problem(_p2p(world, ann, bob, over), 422, "limit_exceeded")
        assert refused["used"] == str(2 * _PER_TRANSFER)
        problem(_authorize(world, dan, payment_id), 404, "payment_not_found")  # not dan's
        assert _authorize(world, ann, payment_id).status_code == 200  # a retry: nothing more
        captured = world.client.post(
            f"/v1/payments/{payment_id}/capture", json={}, headers=world.api
        )
        assert captured.status_code == 200, captured.text
        assert captured.json()["state"] == "captured"
        assert world.wallet(ann) == {"available": _PER_TRANSFER, "pending": 0, "held": 0}
        world.assert_books()


def test_recovery_leaves_a_claim_made_anew_by_a_retry_alone(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, _PER_TRANSFER)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        _crash_authorizing(world, monkeypatch, ann, payment_id, after=False)
        stale_before = time.time_ns()  # what recovery saw as stale when it listed the claim
        _crash_authorizing(world, monkeypatch, ann, payment_id, after=False)  # a retry
        reclaimed = _claim_of(world, payment_id)
        assert reclaimed[3] is not None and reclaimed[3] > stale_before

        async def recover() -> str:
            return await merchant.recover_claim(
                world.runtime, internal_id(payment_id), claimed_before_ns=stale_before
            )

        assert world.client.portal.call(recover) == "ignored_not_stale"
        assert _claim_of(world, payment_id) == reclaimed


def test_a_claimed_payment_past_its_expiry_is_decided_by_its_hold_first(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, _PER_TRANSFER)
        payment_id = _merchant_payment(world, shop, _PER_TRANSFER)
        _crash_authorizing(world, monkeypatch, ann, payment_id, after=True)

        async def lapse() -> None:
            async with world.runtime.unit_of_work.begin() as session:
                row = await session.get(Payment, internal_id(payment_id))
                assert row is not None
                row.expires_at = 1

        world.client.portal.call(lapse)
        _recover(world)  # within the grace period: not expired with its hold left placed
        assert _row(world, payment_id).state == "requires_payment"
        world.runtime.claim_grace_s = 0
        _recover(world)
        assert world.payment(payment_id)["state"] == "authorized"
        assert world.wallet(ann)["held"] == _PER_TRANSFER
        world.assert_books()

"""The payments recovery loop's scheduled work: top-ups and withdrawals a crash left before
the provider answered are resumed from the provider's status (the payment id is the
idempotency key) or failed with their holds voided; authorizations past their expiry are
voided. Each crash is simulated at its exact point; each recovery is run twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from billfold.connectors.types import ChargeRequest, PayoutRequest, ProviderResponse
from billfold.identity.types import Mode
from billfold.payments.flows import recovery, topups, withdrawals
from billfold.payments.models import Payment
from payments.payments_support import TEST_CARD, World, fee_of, internal_id, problem

IBAN = "DE89370400440532013000"


class SimulatedCrashError(Exception):
    """The process died here."""


class CrashingProvider:
    """The sandbox, except that the process dies just before (or just after) calling it."""

    def __init__(self, inner: Any, *, after_call: bool) -> None:
        self.inner, self.name, self.after_call = inner, inner.name, after_call

    async def charge(self, request: ChargeRequest) -> ProviderResponse:
        if self.after_call:
            await self.inner.charge(request)
        raise SimulatedCrashError

    async def payout(self, request: PayoutRequest) -> ProviderResponse:
        if self.after_call:
            await self.inner.payout(request)
        raise SimulatedCrashError

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _crash_on(world: World, provider: str, *, after_call: bool) -> Any:
    real = world.runtime.providers[provider]
    world.runtime.providers[provider] = CrashingProvider(real, after_call=after_call)
    return real


def _recover_twice(world: World) -> None:
    for _ in range(2):
        world.client.portal.call(lambda: recovery.resume_interrupted(world.runtime, older_than_s=0))


def _start_top_up(world: World, user_id: str, amount: int) -> None:
    async def start() -> None:
        await topups.start_top_up(
            world.runtime,
            tenant_id=world.tenant_id,
            mode=Mode.TEST,
            user_id=internal_id(user_id),
            amount=amount,
            currency="USD",
            method="card",
            instrument=TEST_CARD,
        )

    with pytest.raises(SimulatedCrashError):
        world.client.portal.call(start)


def _only_payment(world: World, kind: str) -> dict[str, Any]:
    async def find() -> uuid.UUID:
        from sqlalchemy import select

        async with world.runtime.unit_of_work.begin() as session:
            rows = await session.execute(
                select(Payment.id).where(Payment.tenant_id == world.tenant_id, Payment.kind == kind)
            )
            [payment_id] = rows.scalars().all()
            return payment_id

    return world.payment(f"pay_{world.client.portal.call(find).hex}")


def test_a_top_up_the_provider_never_saw_fails_and_releases_its_hold(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        real = _crash_on(world, "sandbox_card", after_call=False)
        _start_top_up(world, ann.id, 1_000)
        stuck = _only_payment(world, "top_up")
        assert stuck["state"] == "created"
        assert world.wallet(ann)["pending"] == 1_000
        world.runtime.providers["sandbox_card"] = real
        _recover_twice(world)
        after = _only_payment(world, "top_up")
        assert (after["state"], after["failure_code"]) == ("failed", "interrupted")
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert world.sender.take() == []  # nothing was charged
        world.assert_books()


def test_a_top_up_whose_answer_was_lost_resumes_from_the_providers_status(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        real = _crash_on(world, "sandbox_card", after_call=True)
        _start_top_up(world, ann.id, 1_000)
        assert _only_payment(world, "top_up")["state"] == "created"
        world.runtime.providers["sandbox_card"] = real
        _recover_twice(world)
        resumed = _only_payment(world, "top_up")
        assert resumed["state"] == "succeeded", "the status says the charge succeeded"
        assert resumed["provider_reference"] is not None
        world.deliver()  # the provider's confirmation of the one charge: changes nothing
        assert _only_payment(world, "top_up")["state"] == "succeeded"
        _recover_twice(world)
        assert world.wallet(ann) == {"available": 1_000 - fee_of(1_000), "pending": 0, "held": 0}
        world.assert_books()


def _start_withdrawal(world: World, user_id: str, amount: int) -> None:
    async def start() -> None:
        await withdrawals.start_withdrawal(
            world.runtime,
            tenant_id=world.tenant_id,
            mode=Mode.TEST,
            user_id=internal_id(user_id),
            amount=amount,
            currency="USD",
            method="bank_transfer",
            destination=IBAN,
        )

    with pytest.raises(SimulatedCrashError):
        world.client.portal.call(start)


@pytest.mark.parametrize("after_call", [False, True])
def test_a_withdrawal_interrupted_at_the_payout_is_resumed_or_failed(
    database_url: str, after_call: bool
) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 2_000)
        real = _crash_on(world, "sandbox_bank", after_call=after_call)
        _start_withdrawal(world, ann.id, 1_000)
        stuck = _only_payment(world, "withdrawal")
        assert (stuck["state"], stuck["provider_reference"]) == ("processing", None)
        assert world.wallet(ann)["held"] == 1_000 + fee_of(1_000)
        world.runtime.providers["sandbox_bank"] = real
        _recover_twice(world)
        world.deliver()
        _recover_twice(world)
        after = _only_payment(world, "withdrawal")
        if after_call:  # the provider had it: its confirmation pays it out
            assert after["state"] == "succeeded"
            assert world.wallet(ann) == {"available": 980, "pending": 0, "held": 0}
        else:  # never sent: the holds are released
            assert (after["state"], after["failure_code"]) == ("failed", "interrupted")
            assert world.wallet(ann) == {"available": 2_000, "pending": 0, "held": 0}
        world.assert_books()


def test_a_withdrawal_interrupted_after_its_holds_fails_and_releases_them(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 2_000)
        ledger = world.runtime.book.ledger
        real_submit = ledger.submit

        async def submit_then_crash(transfers: Any) -> Any:
            await real_submit(transfers)
            raise SimulatedCrashError

        ledger.submit = submit_then_crash  # type: ignore[method-assign]
        try:
            _start_withdrawal(world, ann.id, 1_000)
        finally:
            del ledger.submit
        assert _only_payment(world, "withdrawal")["state"] == "created"
        assert world.wallet(ann)["held"] == 1_000 + fee_of(1_000)
        _recover_twice(world)
        after = _only_payment(world, "withdrawal")
        assert (after["state"], after["failure_code"]) == ("failed", "interrupted")
        assert world.wallet(ann) == {"available": 2_000, "pending": 0, "held": 0}
        assert world.sender.take() == []  # the payout was never asked for
        world.assert_books()


def _set(world: World, payment_id: str, **columns: int) -> None:
    async def update() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            payment = await session.get(Payment, internal_id(payment_id))
            assert payment is not None
            for name, value in columns.items():
                setattr(payment, name, value)

    world.client.portal.call(update)


def test_lapsed_authorizations_are_voided_by_scheduled_work(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 3_000)
        ids = []
        for _ in range(2):
            created = world.client.post(
                "/v1/payments",
                json={"merchant_id": shop, "amount": 1_000, "currency": "USD"},
                headers=world.api,
            ).json()
            paid = world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
            assert paid.json()["state"] == "authorized"
            ids.append(created["id"])
        unpaid = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 500, "currency": "USD", "expires_in_s": 60},
            headers=world.api,
        ).json()
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 2_000}
        lapsed, current = ids
        _set(world, lapsed, authorization_expires_at=1)
        _set(world, unpaid["id"], expires_at=1)
        _recover_twice(world)
        expired = world.payment(lapsed)
        assert expired["state"] == "expired"
        assert expired["history"][-1]["reason"] == "authorization_expired"
        assert any(t["step"] == "expire" for t in expired["transfers"])
        assert world.payment(current)["state"] == "authorized"
        assert world.payment(unpaid["id"])["state"] == "expired"
        assert world.wallet(ann) == {"available": 2_000, "pending": 0, "held": 1_000}
        refused = world.client.post(f"/v1/payments/{lapsed}/capture", json={}, headers=world.api)
        assert refused.status_code == 409, refused.text
        assert world.client.post(
            f"/v1/payments/{current}/capture", json={}, headers=world.api
        ).json()["state"] == ("captured")
        world.assert_books()


def test_capturing_a_lapsed_authorization_expires_it_instead(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        created = world.client.post(
            "/v1/payments",
            json={"merchant_id": shop, "amount": 1_000, "currency": "USD"},
            headers=world.api,
        ).json()
        world.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=ann.auth)
        _set(world, created["id"], authorization_expires_at=1)
        refused = world.client.post(
            f"/v1/payments/{created['id']}/capture", json={}, headers=world.api
        )
        problem(refused, 409, "payment_expired")
        assert world.payment(created["id"])["state"] == "expired"
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 0}
        assert world.merchant_wallet(shop)["available"] == 0
        world.assert_books()

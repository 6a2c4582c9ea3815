"""What a caller sees of payment actions: another user's payment is not found (as GET
answers) before any state is named; an automatic capture refused for its fees changes
nothing; a partial capture spends only what it captured; a fee schedule charging too many
lines is a clear problem; a merchant onboarding retried after a 5xx makes one merchant."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.payments.fees.types import FeeContext, FeeLine, FeeQuote
from billfold.payments.service import FEE_LINES_MAX
from billfold.wallets.models import Merchant
from payments.payments_support import User, World, one_percent_plus_ten, problem

# Tier 1 (the default), USD: 1,000 per transfer, 2,500 a day.
_PER_TRANSFER = 100_000
_DAILY = 250_000


def _create(world: World, merchant: str, amount: int, **fields: Any) -> str:
    body = {"merchant_id": merchant, "amount": amount, "currency": "USD", **fields}
    response = world.client.post("/v1/payments", json=body, headers=world.api)
    assert response.status_code == 201, response.text
    payment_id: str = response.json()["id"]
    return payment_id


def _authorize(world: World, user: User, payment_id: str) -> Any:
    return world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=user.auth)


def test_authorizing_another_users_payment_answers_what_get_answers(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob, carl, shop = world.user(), world.user(), world.user(), world.merchant()
        world.fund(ann, 10_000)
        paid = _create(world, shop, 1_000)
        assert _authorize(world, ann, paid).json()["state"] == "authorized"
        sent = world.client.post(
            "/v1/me/p2p",
            json={"recipient": carl.handle, "currency": "USD", "amount": 500},
            headers=ann.auth,
        )
        assert sent.status_code == 201, sent.text
        for payment_id in (paid, sent.json()["id"]):
            seen = world.client.get(f"/v1/me/payments/{payment_id}", headers=bob.auth)
            problem(seen, 404, "payment_not_found")
            acted = problem(_authorize(world, bob, payment_id), 404, "payment_not_found")
            assert "state" not in acted and acted["detail"] == seen.json()["detail"]
        # The payer's own retry is still a retry, and their own P2P payment still a 409.
        assert _authorize(world, ann, paid).json()["state"] == "authorized"
        problem(_authorize(world, ann, sent.json()["id"]), 409, "invalid_state_transition")
        assert world.wallet(ann)["held"] == 1_000


def test_an_automatic_capture_refused_for_its_fees_changes_nothing(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)
        payment_id = _create(world, shop, 1_000, capture="automatic")
        before = world.wallet(ann)

        async def whole_amount(session: AsyncSession, context: FeeContext) -> FeeQuote:
            line = FeeLine(
                rule="everything",
                description="all of it",
                amount_minor=context.amount_minor,
                currency=context.currency,
            )
            return FeeQuote(lines=(line,))

        world.runtime.fee_quoter = whole_amount  # the schedule changed since the creation
        problem(_authorize(world, ann, payment_id), 422, "fees_exceed_amount")
        payment = world.payment(payment_id)
        assert payment["state"] == "requires_payment" and payment["payer"] is None
        assert world.wallet(ann) == before
        world.runtime.fee_quoter = one_percent_plus_ten
        assert _authorize(world, ann, payment_id).json()["state"] == "captured"


def test_a_partial_capture_counts_only_what_it_captured_toward_limits(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, shop = world.user(), world.user(), world.merchant()
        world.fund(ann, 4 * _PER_TRANSFER)
        payment_id = _create(world, shop, _PER_TRANSFER)
        assert _authorize(world, ann, payment_id).json()["state"] == "authorized"
        captured = world.client.post(
            f"/v1/payments/{payment_id}/capture", json={"amount": 10_000}, headers=world.api
        )
        assert captured.json()["state"] == "captured", captured.text
        # 10,000 spent: the rest of the daily limit (240,000) is free to send.
        for amount in (_PER_TRANSFER, _PER_TRANSFER, _DAILY - 10_000 - 2 * _PER_TRANSFER):
            body = {"recipient": bob.handle, "currency": "USD", "amount": amount}
            sent = world.client.post("/v1/me/p2p", json=body, headers=ann.auth)
            assert sent.status_code == 201, sent.text
        body = {"recipient": bob.handle, "currency": "USD", "amount": 1}
        refused = problem(
            world.client.post("/v1/me/p2p", json=body, headers=ann.auth), 422, "limit_exceeded"
        )
        assert refused["used"] == str(_DAILY)


def test_a_fee_schedule_charging_too_many_lines_is_a_clear_problem(database_url: str) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 10_000)

        async def many(session: AsyncSession, context: FeeContext) -> FeeQuote:
            return FeeQuote(
                lines=tuple(
                    FeeLine(rule=f"r{i}", description="1", amount_minor=1, currency="USD")
                    for i in range(FEE_LINES_MAX + 1)
                )
            )

        world.runtime.fee_quoter = many
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD"}
        refused = world.client.post("/v1/payments", json=body, headers=world.api)
        assert problem(refused, 422, "fees_exceed_amount")["lines_max"] == FEE_LINES_MAX
        world.runtime.fee_quoter = one_percent_plus_ten


class _WalletOpeningError(Exception):
    """The ledger could not open the merchant's wallet (a stand-in for a 5xx)."""


def test_a_merchant_onboarding_retried_after_a_failure_makes_one_merchant(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        book: Any = world.app.state.wallet_book

        async def failing(**_: object) -> object:
            raise _WalletOpeningError

        body = {"legal_name": "Retry Ltd", "category_code": "5411", "settlement_currency": "USD"}
        monkeypatch.setattr(book, "open_wallet", failing)
        with pytest.raises(_WalletOpeningError):
            world.client.post("/v1/merchants", json=body, headers=world.api)
        monkeypatch.undo()
        created = world.client.post("/v1/merchants", json=body, headers=world.api)
        assert created.status_code == 201, created.text

        async def merchants() -> int:
            async with world.runtime.unit_of_work.read() as session:
                statement = select(func.count()).where(Merchant.tenant_id == world.tenant_id)
                return int((await session.execute(statement)).scalar_one())

        assert world.client.portal.call(merchants) == 1

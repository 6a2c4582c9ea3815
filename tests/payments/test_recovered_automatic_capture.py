"""Recovery of a merchant authorization a crash interrupted after its hold, for a payment
captured automatically whose capture the fees now refuse: the authorize call refuses such
a payment up front with nothing held, so recovery does not leave the payer's money held
for a capture that cannot happen: it releases the hold and records why."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.payments.fees.types import FeeContext, FeeLine, FeeQuote
from billfold.payments.flows import merchant, recovery
from payments.payments_support import CrashError, World, crashing, internal_id


async def _whole_amount(session: AsyncSession, context: FeeContext) -> FeeQuote:
    """A schedule changed since the payment was made: its fee takes the whole amount."""
    line = FeeLine(
        rule="everything",
        description="the whole amount",
        amount_minor=context.amount_minor,
        currency=context.currency,
    )
    return FeeQuote(lines=(line,))


def test_recovered_automatic_capture_refused_on_fees_releases_the_hold_and_says_why(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        before = world.wallet(ann)
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD", "capture": "automatic"}
        created = world.client.post("/v1/payments", json=body, headers=world.api)
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        monkeypatch.setattr(
            merchant, "apply_steps", crashing(merchant.apply_steps, after_ledger=True)
        )

        async def interrupted() -> None:
            with pytest.raises(CrashError):
                await merchant.authorize(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    user_id=internal_id(ann.id),
                    payment_id=internal_id(payment_id),
                )

        world.client.portal.call(interrupted)
        monkeypatch.undo()
        assert world.wallet(ann)["held"] == 1_000  # the hold is in the ledger
        world.runtime.fee_quoter = _whole_amount
        world.runtime.claim_grace_s = 0

        async def recover() -> Any:
            return await recovery.resume_interrupted(world.runtime, older_than_s=0)

        world.client.portal.call(recover)
        shown = world.payment(payment_id)
        assert shown["state"] == "voided"
        assert shown["failure_code"] == "fees_exceed_amount"
        reasons = [change["reason"] for change in shown["history"]]
        assert reasons[-1] == "automatic_capture_failed:fees_exceed_amount"
        assert world.wallet(ann) == before  # nothing held any more, nothing taken
        assert shown["fees"] == []
        world.client.portal.call(recover)  # a second round finds nothing to do
        assert world.payment(payment_id)["state"] == "voided"
        assert world.wallet(ann) == before
        world.assert_books()

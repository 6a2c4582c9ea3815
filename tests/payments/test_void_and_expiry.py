"""A void and the expiry of the same authorization: the ledger voids the hold once, and
the payment records whichever released it — a merchant's void that got there first is
`voided`, never `expired` — with one event."""

from __future__ import annotations

from typing import Any

import pytest

from billfold.identity.types import Mode
from billfold.payments.flows import merchant
from payments.payments_support import CrashError, World, crashing, internal_id


def _authorized(world: World) -> tuple[Any, str]:
    ann, shop = world.user(), world.merchant()
    world.fund(ann, 5_000)
    body = {"merchant_id": shop, "amount": 1_000, "currency": "USD"}
    payment_id: str = world.client.post("/v1/payments", json=body, headers=world.api).json()["id"]
    authorized = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
    assert authorized.json()["state"] == "authorized", authorized.text
    return ann, payment_id


def test_a_void_the_ledger_applied_before_the_expiry_is_recorded_as_a_void(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The void's ledger step released the hold, then its process died (or the expiry
    took the row first): the expiry found the hold already voided and recorded the payment
    `expired`, and the merchant's void (or its retry) was refused with 409."""
    with World(database_url) as world:
        ann, payment_id = _authorized(world)
        real = merchant.apply_steps
        monkeypatch.setattr(
            merchant, "apply_steps", crashing(real, after_ledger=True, first_step="void")
        )
        with pytest.raises(CrashError):
            world.client.portal.call(
                lambda: merchant.void(
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    payment_id=internal_id(payment_id),
                )
            )
        monkeypatch.setattr(merchant, "apply_steps", real)
        assert world.payment(payment_id)["state"] == "authorized"
        world.lapse_authorization(payment_id)
        world.resume_interrupted()

        payment = world.payment(payment_id)
        assert payment["state"] == "voided"
        assert "expire" not in [transfer["step"] for transfer in payment["transfers"]]
        retried = world.client.post(f"/v1/payments/{payment_id}/void", headers=world.api)
        assert retried.status_code == 200, retried.text
        assert retried.json()["state"] == "voided"
        assert world.wallet(ann) == {"available": 5_000, "pending": 0, "held": 0}
        assert [kind for kind, _ in world.outbox(payment_id)] == [
            "com.billfold.payment.created.v1",
            "com.billfold.payment.authorized.v1",
            "com.billfold.payment.voided.v1",
        ]

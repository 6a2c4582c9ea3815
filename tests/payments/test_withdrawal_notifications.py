"""A payout's notifications against what the books already recorded: a report of the
opposite outcome (paid after the withdrawal failed, failed after it was paid out) changes
nothing and is told to an operator; a failure racing another keeps the code recorded
first; and the provider's reference reaches a payment whose call timed out."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from structlog.testing import capture_logs

from billfold.ledger.types import TransferResult
from billfold.payments.flows import withdrawals
from payments.payments_support import World, fee_of
from payments.test_provider_notification_matching import _resigned

IBAN = "DE89370400440532013000"
TIMEOUT_CARD = "4000000000000119"
CONTRADICTS = "payments.notification_contradicts_outcome"


def _withdraw(world: World, user: Any, amount: int) -> dict[str, Any]:
    body = {"amount": amount, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
    response = world.client.post("/v1/me/withdrawals", json=body, headers=user.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.parametrize(
    ("amount", "final", "contradiction"),
    [(4_001, "failed", "payout.succeeded"), (4_000, "succeeded", "payout.failed")],
)
def test_a_payout_outcome_against_the_recorded_one_changes_nothing_and_is_a_warning(
    database_url: str, amount: int, final: str, contradiction: str
) -> None:
    """Paid out after the withdrawal failed (its money back in the wallet), or returned
    after it was paid out: the books keep their final state, and the provider moved money
    they do not show, so it is a warning for an operator, not an info line like a
    duplicate's. A resend of the recorded outcome is no contradiction."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        payment = _withdraw(world, ann, amount)
        [outcome] = world.sender.take()
        world.deliver([outcome])
        done = world.payment(payment["id"])
        assert done["state"] == final
        wallet = world.wallet(ann)

        late = _resigned(world, outcome, type_=contradiction, failure_code="declined")
        resent = _resigned(world, late, type_=json.loads(outcome.body)["type"])
        with capture_logs() as logs:
            world.deliver([late, resent])
        warnings = [entry for entry in logs if entry["event"] == CONTRADICTS]
        assert [(entry["type"], entry["outcome"]) for entry in warnings] == [
            (contradiction, f"ignored_{final}")
        ]
        assert warnings[0]["log_level"] == "warning"
        assert world.payment(payment["id"])["history"] == done["history"]
        assert world.wallet(ann) == wallet


def test_a_payout_failure_racing_another_keeps_the_failure_recorded_first(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reports of a failure at once (the notification and recovery's status query):
    the one that records the failure first decides its code; the other, finding it failed
    under the lock, records nothing. It used to overwrite the code, so the payment's
    `failure_code` contradicted the reason its history recorded."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        before = world.wallet(ann)
        payment = _withdraw(world, ann, 4_001)  # ...01: the bank declines
        [declined] = world.sender.take()
        real = withdrawals.apply_steps
        raced: list[str] = []

        async def racing(runtime: Any, owner_id: uuid.UUID, steps: Any) -> list[TransferResult]:
            if not raced:  # the other report lands while this one is at the ledger
                raced.append("racing")
                raced[0] = await withdrawals.finish_withdrawal(
                    runtime, owner_id, succeeded=False, reason="declined"
                )
            return await real(runtime, owner_id, steps)

        monkeypatch.setattr(withdrawals, "apply_steps", racing)
        world.deliver([_resigned(world, declined, failure_code="insufficient_funds")])
        assert raced == ["applied"]
        failed = world.payment(payment["id"])
        assert failed["failure_code"] == "declined"
        assert [entry["to_state"] for entry in failed["history"]].count("failed") == 1
        assert failed["history"][-1]["reason"] == "declined"
        kinds = [kind for kind, _ in world.outbox(payment["id"])]
        assert kinds.count("com.billfold.payment.failed.v1") == 1
        assert world.wallet(ann) == before


@pytest.mark.parametrize("kind", ["withdrawal", "top_up"])
def test_a_payment_whose_call_timed_out_keeps_the_reference_its_notification_reports(
    database_url: str, kind: str
) -> None:
    """The provider's call timed out (it took the payment all the same) and its
    notification finished the payment: the provider's reference it reports is recorded,
    where the payment used to keep none for good."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        if kind == "withdrawal":
            world.fund(ann, 10_000)
            payment = _withdraw(world, ann, 3_008)  # ...08: the call times out
        else:
            payment = world.top_up(ann, 5_000, card=TIMEOUT_CARD).json()
        assert payment["state"] == "processing" and payment["provider_reference"] is None
        [confirmation] = world.sender.take()
        world.deliver([confirmation])
        done = world.payment(payment["id"])
        assert done["state"] == "succeeded"
        reported = json.loads(confirmation.body)["data"]["provider_reference"]
        assert done["provider_reference"] == reported
        if kind == "withdrawal":
            assert world.wallet(ann)["held"] == 0
        else:
            assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)

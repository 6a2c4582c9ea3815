"""A lost notification is recovered from the provider's status: the sandbox's status says
what it notified (succeeded), not its first answer (`processing`), so recovery completes a
top-up or withdrawal whose call timed out and whose confirmation never came. When the
confirmation arrives late after all (after recovery, or at the same time), the money still
moves once."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from typing import Any

import pytest

from billfold.connectors.senders import OutgoingNotification
from billfold.payments.flows import recovery
from billfold.payments.flows.notifications import apply_stored
from payments.payments_support import World, fee_of

TIMEOUT_CARD = "4000000000000119"
IBAN = "DE89370400440532013000"


def _payload(world: World, notification: OutgoingNotification) -> dict[str, Any]:
    """The notification as the route stores it."""
    parsed = world.runtime.sandboxes[notification.provider].parse_notification(
        body=notification.body,
        headers={name.lower(): value for name, value in notification.headers.items()},
        now_s=int(time.time()),
        tolerance_s=300,
    )
    return {**asdict(parsed), "type": parsed.type.value}


def _arrives_late(world: World, notification: OutgoingNotification, when: str) -> None:
    """The lost confirmation arrives after all: after recovery completed the payment, or
    while recovery runs (both apply at once)."""
    if when == "after":
        world.resume_interrupted()
        world.deliver([notification])
        return

    async def together() -> None:
        await asyncio.gather(
            recovery.resume_interrupted(world.runtime, older_than_s=0),
            apply_stored(
                world.runtime, _payload(world, notification), provider=notification.provider
            ),
        )

    world.client.portal.call(together)


def _entered(payment: dict[str, Any], state: str) -> int:
    return sum(1 for change in payment["history"] if change["to_state"] == state)


@pytest.mark.parametrize("late", ["never", "after", "together"])
def test_a_top_up_whose_confirmation_was_lost_is_completed_from_the_status_once(
    database_url: str, late: str
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        created = world.top_up(ann, 5_000, card=TIMEOUT_CARD)
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        [confirmation] = world.sender.take()  # lost on the way
        stuck = world.payment(payment_id)
        assert (stuck["state"], stuck["provider_reference"]) == ("processing", None)

        world.resume_interrupted()  # asks the provider's status
        if late != "never":
            _arrives_late(world, confirmation, late)
        world.resume_interrupted()
        done = world.payment(payment_id)
        assert done["state"] == "succeeded" and done["provider_reference"] is not None
        assert _entered(done, "succeeded") == 1
        assert world.wallet(ann) == {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}
        world.assert_books()


@pytest.mark.parametrize("late", ["never", "after", "together"])
def test_a_withdrawal_whose_confirmation_was_lost_is_completed_from_the_status_once(
    database_url: str, late: str
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        world.fund(ann, 3_000)
        before = world.wallet(ann)["available"]
        amount = 1_008  # the sandbox times out on amounts ending in 08, then pays out
        body = {"amount": amount, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
        created = world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth)
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        [confirmation] = world.sender.take()  # lost on the way
        assert json.loads(confirmation.body)["type"] == "payout.succeeded"
        stuck = world.payment(payment_id)
        assert (stuck["state"], stuck["provider_reference"]) == ("processing", None)

        world.resume_interrupted()
        if late != "never":
            _arrives_late(world, confirmation, late)
        world.resume_interrupted()
        done = world.payment(payment_id)
        assert done["state"] == "succeeded" and done["provider_reference"] is not None
        assert _entered(done, "succeeded") == 1
        paid = amount + fee_of(amount)
        assert world.wallet(ann) == {"available": before - paid, "pending": 0, "held": 0}
        world.assert_books()

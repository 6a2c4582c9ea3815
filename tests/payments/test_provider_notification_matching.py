"""A provider notification applies only to the payment it describes: one of that provider's
payments, of the currency and (for a charge's or payout's outcome) the amount it was
asked for, and a dispute only through the payment it disputes. Anything else is left
alone, whatever the signature says: a signed message is the provider's word about its own
charges, not about any payment a reference or a dispute id happens to name."""

from __future__ import annotations

import json
import time
from typing import Any

from billfold.connectors.senders import OutgoingNotification
from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header
from payments.payments_support import World, fee_of

IBAN = "DE89370400440532013000"


def _resigned(
    world: World,
    notification: OutgoingNotification,
    *,
    provider: str = "",
    type_: str = "",
    **data: Any,
) -> OutgoingNotification:
    """The notification with a new event id, and its type, provider or `data` changed,
    signed by that provider's sandbox: what that provider could really send."""
    provider = provider or notification.provider
    envelope = json.loads(notification.body)
    envelope["id"] = f"{envelope['id']}_again"
    envelope["type"] = type_ or envelope["type"]
    envelope["data"] = {**envelope["data"], **data}
    body = json.dumps(envelope).encode()
    secret = world.runtime.sandboxes[provider].secret
    header = signature_header(secret=secret, timestamp_s=int(time.time()), body=body)
    return OutgoingNotification(provider, body, {SIGNATURE_HEADER: header})


def _withdraw(world: World, user: Any, amount: int) -> Any:
    body = {"amount": amount, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
    return world.client.post("/v1/me/withdrawals", json=body, headers=user.auth).json()


def test_a_charge_confirmed_for_another_amount_or_currency_is_not_settled(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [confirmation] = world.sender.take()
        world.deliver(
            [
                _resigned(world, confirmation, amount=1),
                _resigned(world, confirmation, currency="EUR"),
            ]
        )
        assert world.payment(payment["id"])["state"] == "processing"
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        world.deliver([confirmation])  # the provider's own word for 5,000 USD
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)


def test_a_payout_failure_for_another_amount_does_not_return_the_money(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        before = world.wallet(ann)["available"]
        payment = _withdraw(world, ann, 4_000)
        [confirmation] = world.sender.take()
        failed = _resigned(
            world, confirmation, type_="payout.failed", amount=4_001, failure_code="declined"
        )
        world.deliver([failed])
        assert world.payment(payment["id"])["state"] == "processing"

        world.deliver([confirmation])  # the payout of 4,000 was made
        assert world.payment(payment["id"])["state"] == "succeeded"
        held = 4_000 + fee_of(4_000)
        assert world.wallet(ann) == {"available": before - held, "pending": 0, "held": 0}


def test_another_providers_notification_does_not_settle_a_charge(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()  # by card: sandbox_card's charge
        [confirmation] = world.sender.take()
        world.deliver([_resigned(world, confirmation, provider="sandbox_bank")])
        assert world.payment(payment["id"])["state"] == "processing"
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        world.deliver([confirmation])
        assert world.payment(payment["id"])["state"] == "succeeded"


def test_a_dispute_is_resolved_only_through_the_payment_it_disputes(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        by_card = world.fund(ann, 1_000)
        bank = {"method": "bank_transfer", "instrument": IBAN}
        by_bank = world.top_up(bob, 2_000, **bank).json()
        world.deliver()
        card = world.runtime.sandboxes["sandbox_card"]
        bank_sandbox = world.runtime.sandboxes["sandbox_bank"]
        dispute_id = card.open_dispute(by_card["id"], amount_minor=500)
        world.deliver()
        # The bank reports, about its own payment, the outcome of the card's dispute.
        bank_sandbox.resolve_dispute(
            by_bank["id"], dispute_id=dispute_id, won=False, amount_minor=500
        )
        world.deliver()
        [dispute] = world.payment(by_card["id"])["disputes"]
        assert dispute["state"] == "open" and dispute["held_amount"] == "500"
        assert world.payment(by_bank["id"])["disputes"] == []

        card.resolve_dispute(by_card["id"], dispute_id=dispute_id, won=True, amount_minor=500)
        world.deliver()
        assert world.payment(by_card["id"])["disputes"][0]["state"] == "won"

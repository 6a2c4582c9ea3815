"""A provider notification that can never apply fails at once (`PermanentInboundError`):
a dispute of more than the payment can ever give back, of a withdrawal or of a failed
payment, an outcome opposite to the one its dispute took, a stored payload that is not a
notification. One that may yet apply (the charge it disputes still processing, room an
open dispute may give back, a dispute still opening) is retried, and applies once it can.
A malformed envelope is refused by the route (400) before anything is stored."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from billfold.connectors.senders import OutgoingNotification
from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header
from billfold.events.inbound import store_inbound
from billfold.events.models import InboundEvent
from billfold.payments.flows.notifications import notification_source
from billfold.payments.models import Dispute
from payments.payments_support import World, fee_of, problem

IBAN = "DE89370400440532013000"


def _assert_rejected(world: World, notification_id: str, *reasons: str) -> None:
    row = world.inbound_row(notification_id)
    assert (row.status, row.attempts) == ("failed", 1), row.last_error
    for reason in reasons:
        assert reason in (row.last_error or ""), row.last_error


def _assert_retried(world: World, notification_id: str) -> None:
    row = world.inbound_row(notification_id)
    assert (row.status, row.attempts) == ("received", 1), row.last_error
    assert row.next_attempt_at > time.time_ns(), "waits for its next attempt"


def _open(world: World, payment_id: str, amount: int, *, provider: str = "sandbox_card") -> str:
    """The provider reports a dispute of `amount` on the payment; the notification's id."""
    world.runtime.sandboxes[provider].open_dispute(payment_id, amount_minor=amount)
    [opened] = world.sender.take()
    return world.post_and_process(opened)


def test_a_dispute_of_more_than_the_payment_can_give_back_fails_at_once(
    database_url: str,
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        gross = int(topped["amount"])
        before = world.wallet(ann)
        over = _open(world, topped["id"], gross + 1)
        _assert_rejected(world, over, "refund_exceeds_captured", f"({gross})")
        assert world.payment(topped["id"])["disputes"] == []
        assert world.wallet(ann) == before

        within = _open(world, topped["id"], 500)  # the payment still takes a fitting one
        assert world.inbound_row(within).status == "processed"
        [dispute] = world.payment(topped["id"])["disputes"]
        assert dispute["state"] == "open" and dispute["held_amount"] == "500"


def test_a_dispute_beyond_the_room_an_open_dispute_may_give_back_is_retried(
    database_url: str,
) -> None:
    """Over what is disputable now, but not over what the payment can ever give back: an
    open dispute may be won and give its amount back, so it is retried, and applies then."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        gross = int(topped["amount"])
        first = _open(world, topped["id"], 600)
        assert world.inbound_row(first).status == "processed"
        second = _open(world, topped["id"], gross - 100)
        _assert_retried(world, second)
        assert "RefundExceedsCaptured" in (world.inbound_row(second).last_error or "")

        [dispute] = world.payment(topped["id"])["disputes"]
        resolved = world.client.post(
            f"/v1/disputes/{dispute['id']}/resolve", json={"outcome": "won"}, headers=world.api
        )
        assert resolved.status_code == 200, resolved.text
        world.retry_inbound_now(second)
        row = world.inbound_row(second)
        assert (row.status, row.attempts) == ("processed", 2)
        states = sorted(d["state"] for d in world.payment(topped["id"])["disputes"])
        assert states == ["open", "won"]

        more = _open(world, topped["id"], 200)  # 100 is left, but the open one may be won
        _assert_retried(world, more)


def test_a_dispute_beyond_what_a_lost_dispute_left_fails_at_once(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        gross = int(topped["amount"])
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(topped["id"], amount_minor=600)
        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=False, amount_minor=600)
        world.deliver()
        assert world.payment(topped["id"])["disputes"][0]["state"] == "lost"
        over = _open(world, topped["id"], gross - 600 + 1)
        _assert_rejected(world, over, f"({gross - 600})")


def test_a_dispute_of_a_charge_still_processing_is_retried_until_it_settles(
    database_url: str,
) -> None:
    """Delivered out of order (the dispute before the charge's confirmation): retried, and
    opened once the charge settled, not rejected."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [confirmation] = world.sender.take()
        early = _open(world, payment["id"], 1_000)
        _assert_retried(world, early)
        assert "InvalidStateTransition" in (world.inbound_row(early).last_error or "")

        world.deliver([confirmation])
        assert world.payment(payment["id"])["state"] == "succeeded"
        world.retry_inbound_now(early)
        assert world.inbound_row(early).status == "processed"
        [dispute] = world.payment(payment["id"])["disputes"]
        assert dispute["state"] == "open" and dispute["held_amount"] == "1000"


def test_a_dispute_of_a_failed_payment_or_of_a_withdrawal_fails_at_once(
    database_url: str,
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        declined = world.top_up(ann, 5_000, card="4000000000000002").json()
        world.deliver()
        assert world.payment(declined["id"])["state"] == "failed"
        _assert_rejected(world, _open(world, declined["id"], 1_000), "failed payment")

        world.fund(ann, 3_000)
        body = {"amount": 1_000, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
        paid_out = world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth).json()
        world.deliver()
        assert world.payment(paid_out["id"])["state"] == "succeeded"
        disputed = _open(world, paid_out["id"], 500, provider="sandbox_bank")
        _assert_rejected(world, disputed, "withdrawal")
        assert world.payment(paid_out["id"])["disputes"] == []


def test_an_outcome_opposite_to_the_disputes_fails_at_once(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(topped["id"], amount_minor=500)
        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=True, amount_minor=500)
        world.deliver()
        available = world.wallet(ann)["available"]
        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=False, amount_minor=500)
        [lost] = world.sender.take()
        _assert_rejected(
            world, world.post_and_process(lost), "invalid_state_transition", "won dispute"
        )
        assert world.payment(topped["id"])["disputes"][0]["state"] == "won"
        assert world.wallet(ann)["available"] == available

        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=True, amount_minor=500)
        [again] = world.sender.take()  # the same outcome again: a duplicate, processed
        assert world.inbound_row(world.post_and_process(again)).status == "processed"


def test_an_outcome_for_a_dispute_still_opening_is_retried(database_url: str) -> None:
    """A dispute left `opening` (its hold placed, a crash before it was marked open) takes
    no outcome yet; recovery opens it, and the retried outcome then applies."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(topped["id"], amount_minor=500)
        world.deliver()

        async def reopen() -> None:
            async with world.app.state.unit_of_work.begin() as session:
                await session.execute(
                    update(Dispute)
                    .where(Dispute.provider_dispute_id == dispute_id)
                    .values(state="opening")
                )

        world.client.portal.call(reopen)
        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=False, amount_minor=500)
        [lost] = world.sender.take()
        early = world.post_and_process(lost)
        _assert_retried(world, early)

        world.resume_interrupted()  # drives the opening dispute open
        world.retry_inbound_now(early)
        assert world.inbound_row(early).status == "processed"
        assert world.payment(topped["id"])["disputes"][0]["state"] == "lost"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "charge.refunded"},
        {"amount_minor": True},
        {"amount_minor": "5000"},
        {"amount_minor": 5000.0},
        {"reference": None},
        {"surplus": 1},
    ],
)
def test_a_stored_payload_that_is_not_a_notification_fails_at_once(
    database_url: str, payload: dict[str, Any]
) -> None:
    """Not what the route stores: never applied (`true` is no amount), never retried."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [confirmation] = world.sender.take()
        envelope = json.loads(confirmation.body)
        stored = {
            "event_id": f"evt_{uuid.uuid4().hex}",
            "type": envelope["type"],
            "reference": payment["id"],
            "provider_reference": envelope["data"]["provider_reference"],
            "amount_minor": 5_000,
            "currency": "USD",
            "created_at_s": envelope["created"],
            "failure_code": None,
            "dispute_id": None,
        } | payload

        async def store() -> uuid.UUID:
            async with world.app.state.unit_of_work.begin() as session:
                row = await store_inbound(
                    session,
                    source=notification_source("sandbox_card"),
                    external_id=stored["event_id"],
                    payload=stored,
                    now_ns=time.time_ns(),
                )
                return uuid.UUID(str(row.id))

        row_id = world.client.portal.call(store)
        world.process_inbound()
        _assert_rejected(world, f"ntf_{row_id.hex}", "not a notification")
        assert world.payment(payment["id"])["state"] == "processing"
        world.deliver([confirmation])
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)


def _altered(notification: OutgoingNotification, **data: Any) -> bytes:
    envelope = json.loads(notification.body)
    envelope["id"] = f"{envelope['id']}_forged"
    envelope["data"] = {**envelope["data"], **data}
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("amount", [True, "5000", 5000.0, 0, 2**62 + 1])
def test_a_malformed_envelope_is_refused_before_it_is_stored(
    database_url: str, amount: Any
) -> None:
    """Signed by the provider, but not a JSON integer of minor units in its bounds: 400
    `invalid_notification` (problem+json), nothing stored, nothing applied."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [confirmation] = world.sender.take()

        async def count() -> int:
            async with world.app.state.unit_of_work.read() as session:
                total = await session.scalar(select(func.count()).select_from(InboundEvent))
                return int(total or 0)

        before = world.client.portal.call(count)
        body = _altered(confirmation, amount=amount)
        secret = world.runtime.sandboxes["sandbox_card"].secret
        header = signature_header(secret=secret, timestamp_s=int(time.time()), body=body)
        response = world.client.post(
            f"/v1/connectors/{confirmation.provider}/notifications",
            content=body,
            headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"},
        )
        problem(response, 400, "invalid_notification")
        assert world.client.portal.call(count) == before
        world.process_inbound()
        assert world.payment(payment["id"])["state"] == "processing"
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        world.deliver([confirmation])
        assert world.payment(payment["id"])["state"] == "succeeded"


def test_an_outcome_before_its_opening_is_retried_until_the_dispute_opens(
    database_url: str,
) -> None:
    """Providers do not promise order: a `dispute.lost` delivered before its
    `dispute.opened` used to be processed as `unknown_dispute`, and the outcome was lost
    (the dispute then stayed open for ever). It is retried, and applies once opened."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(topped["id"], amount_minor=500)
        [opened] = world.sender.take()
        card.resolve_dispute(topped["id"], dispute_id=dispute_id, won=False, amount_minor=500)
        [lost] = world.sender.take()
        early = world.post_and_process(lost)
        _assert_retried(world, early)
        assert "DisputeNotOpenYetError" in (world.inbound_row(early).last_error or "")
        assert world.payment(topped["id"])["disputes"] == []

        assert world.inbound_row(world.post_and_process(opened)).status == "processed"
        world.retry_inbound_now(early)
        assert world.inbound_row(early).status == "processed"
        [dispute] = world.payment(topped["id"])["disputes"]
        assert dispute["state"] == "lost"


def test_an_outcome_naming_another_payments_dispute_changes_nothing(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        first, second = world.fund(ann, 1_000), world.fund(ann, 1_000)
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(first["id"], amount_minor=500)
        world.deliver()
        card.resolve_dispute(second["id"], dispute_id=dispute_id, won=False, amount_minor=500)
        [forged] = world.sender.take()
        assert world.inbound_row(world.post_and_process(forged)).status == "processed"
        assert world.payment(first["id"])["disputes"][0]["state"] == "open"
        assert world.payment(second["id"])["disputes"] == []

"""A top-up or withdrawal the provider answered without an outcome (`processing` with a
provider reference, or a 3-D Secure `requires_action`) whose notification is lost is
reconciled from the provider's status once it has waited longer than the reconciliation
age (`reconcile_after_s`, from when it entered that state): a final answer is applied as
its notification would be, so the money moves once and a late notification changes
nothing; anything else changes nothing. The provider is asked at most once per age."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from billfold.connectors.senders import OutgoingNotification
from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header
from billfold.connectors.types import ProviderResponse, ProviderStatus
from billfold.ledger.types import AccountStatus
from billfold.payments.flows import recovery
from billfold.payments.flows.notifications import apply_stored
from payments.payments_support import World, fee_of, internal_id

THREE_DS_CARD = "4000000000003220"
IBAN = "DE89370400440532013000"
Status = Callable[[ProviderResponse | None], ProviderResponse | None]


def _entered(payment: dict[str, Any], state: str) -> int:
    return sum(1 for change in payment["history"] if change["to_state"] == state)


def _rewritten(
    world: World, notification: OutgoingNotification, **data: Any
) -> OutgoingNotification:
    """The provider's notification with other data, signed as the provider signs."""
    event = json.loads(notification.body)
    event["id"] = f"{event['id']}_b"
    event.update({key: data.pop(key) for key in ("type",) if key in data})
    event["data"].update(data)
    body = json.dumps(event, separators=(",", ":")).encode()
    secret = world.runtime.sandboxes[notification.provider].secret
    header = signature_header(secret=secret, timestamp_s=int(time.time()), body=body)
    return OutgoingNotification(notification.provider, body, {SIGNATURE_HEADER: header})


def _payload(world: World, notification: OutgoingNotification) -> dict[str, Any]:
    """The notification as the route stores it."""
    parsed = world.runtime.sandboxes[notification.provider].parse_notification(
        body=notification.body,
        headers={name.lower(): value for name, value in notification.headers.items()},
        now_s=int(time.time()),
        tolerance_s=300,
    )
    return {**dataclasses.asdict(parsed), "type": parsed.type.value}


def _withdraw(world: World, amount: int) -> tuple[Any, int, str, OutgoingNotification]:
    """A withdrawal answered `processing`, and its outcome's notification, lost on the way."""
    ann = world.user()
    world.fund(ann, 3_000)
    before = world.wallet(ann)["available"]
    body = {"amount": amount, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
    created = world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth)
    assert created.status_code == 201, created.text
    [lost] = world.sender.take()
    return ann, before, created.json()["id"], lost


@pytest.mark.parametrize("late", [False, True])
def test_a_processing_top_up_whose_confirmation_was_lost_is_settled_once_past_the_age(
    database_url: str, late: bool
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        created = world.top_up(ann, 5_000)
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        [lost] = world.sender.take()
        assert json.loads(lost.body)["type"] == "charge.succeeded"
        stuck = world.payment(payment_id)
        assert stuck["state"] == "processing" and stuck["provider_reference"] is not None
        asked = world.watch_status("sandbox_card")

        world.resume_interrupted()  # not before the age: the notification may still come
        assert world.payment(payment_id)["state"] == "processing"
        assert asked == []
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        done = world.payment(payment_id)
        assert done["state"] == "succeeded" and _entered(done, "succeeded") == 1
        assert asked == [payment_id]
        credited = {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}
        assert world.wallet(ann) == credited

        world.resume_interrupted()
        if late:
            world.deliver([lost])
        again = world.payment(payment_id)
        assert again["state"] == "succeeded" and _entered(again, "succeeded") == 1
        assert asked == [payment_id]
        assert world.wallet(ann) == credited


@pytest.mark.parametrize("late", [False, True])
def test_a_processing_top_up_the_provider_failed_is_failed_with_its_code_past_the_age(
    database_url: str, late: bool
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment_id = world.top_up(ann, 5_000).json()["id"]
        [succeeded] = world.sender.take()
        lost = _rewritten(world, succeeded, type="charge.failed", failure_code="do_not_honor")
        asked = world.watch_status(
            "sandbox_card",
            lambda response: (
                response
                and dataclasses.replace(
                    response, status=ProviderStatus.FAILED, failure_code="do_not_honor"
                )
            ),
        )
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        world.resume_interrupted()
        assert world.payment(payment_id)["state"] == "processing" and asked == []
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        failed = world.payment(payment_id)
        assert (failed["state"], failed["failure_code"]) == ("failed", "do_not_honor")
        assert asked == [payment_id]
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}

        world.resume_interrupted()
        if late:
            world.deliver([lost])
        again = world.payment(payment_id)
        assert (again["state"], again["failure_code"]) == ("failed", "do_not_honor")
        assert _entered(again, "failed") == 1 and asked == [payment_id]
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}


@pytest.mark.parametrize("succeeded", [True, False])
def test_a_3ds_top_up_whose_challenge_was_answered_and_its_notification_lost_is_reconciled(
    database_url: str, succeeded: bool
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment_id = world.top_up(ann, 5_000, card=THREE_DS_CARD).json()["id"]
        assert world.payment(payment_id)["state"] == "requires_action"
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=succeeded)
        [lost] = world.sender.take()
        asked = world.watch_status("sandbox_card")

        world.resume_interrupted()
        assert world.payment(payment_id)["state"] == "requires_action" and asked == []
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        world.deliver([lost])  # arrives late after all
        world.resume_interrupted()
        done = world.payment(payment_id)
        assert asked == [payment_id]
        if succeeded:
            assert done["state"] == "succeeded" and _entered(done, "succeeded") == 1
            credited = {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}
            assert world.wallet(ann) == credited
        else:
            assert (done["state"], done["failure_code"]) == ("failed", "authentication_failed")
            assert _entered(done, "failed") == 1
            assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}


RACES = 4


@pytest.mark.parametrize("kind", ["top_up", "withdrawal"])
def test_a_late_notification_applied_while_the_status_is_reconciled_records_one_outcome(
    database_url: str, kind: str
) -> None:
    """Both finish the payment at once: the ledger moves the money once, and the payment
    enters its final state once (one history row, one event, counted once in the month's
    volume), whichever records it first."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        if kind == "withdrawal":
            world.fund(ann, RACES * 1_100)
        before = world.wallet(ann)["available"]
        raced: list[tuple[str, OutgoingNotification]] = []
        for _ in range(RACES):
            if kind == "top_up":
                created = world.top_up(ann, 5_000)
            else:
                body = {
                    "amount": 1_000,
                    "currency": "USD",
                    "method": "bank_transfer",
                    "destination": IBAN,
                }
                created = world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth)
            assert created.status_code == 201, created.text
            [lost] = world.sender.take()
            raced.append((created.json()["id"], lost))
        for payment_id, _ in raced:
            world.reconcile_due(payment_id)
        waiting_since_ns = time.time_ns() - int(world.runtime.reconcile_after_s * 1e9)

        async def together() -> None:
            await asyncio.gather(
                *(
                    recovery.reconcile_outcome(
                        world.runtime, internal_id(payment_id), waiting_since_ns=waiting_since_ns
                    )
                    for payment_id, _ in raced
                ),
                *(
                    apply_stored(world.runtime, _payload(world, lost), provider=lost.provider)
                    for _, lost in raced
                ),
            )

        world.client.portal.call(together)
        for payment_id, _ in raced:
            done = world.payment(payment_id)
            assert done["state"] == "succeeded" and _entered(done, "succeeded") == 1, done
        events = [type_ for payment_id, _ in raced for type_, _ in world.outbox(payment_id)]
        assert events.count("com.billfold.payment.succeeded.v1") == RACES
        if kind == "top_up":
            expected = before + RACES * (5_000 - fee_of(5_000))
        else:
            expected = before - RACES * (1_000 + fee_of(1_000))
        assert world.wallet(ann) == {"available": expected, "pending": 0, "held": 0}


@pytest.mark.parametrize(("amount", "succeeded"), [(1_000, True), (1_001, False)])
def test_a_withdrawal_whose_outcome_was_lost_is_finished_once_past_the_age(
    database_url: str, amount: int, succeeded: bool
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann, before, payment_id, lost = _withdraw(world, amount)
        stuck = world.payment(payment_id)
        assert stuck["state"] == "processing" and stuck["provider_reference"] is not None
        held = {"available": before - amount - fee_of(amount), "pending": 0}
        assert world.wallet(ann) == {**held, "held": amount + fee_of(amount)}
        asked = world.watch_status("sandbox_bank")

        world.resume_interrupted()
        assert world.payment(payment_id)["state"] == "processing" and asked == []
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        world.resume_interrupted()
        world.deliver([lost])  # arrives late after all
        done = world.payment(payment_id)
        assert asked == [payment_id]
        if succeeded:
            assert done["state"] == "succeeded" and _entered(done, "succeeded") == 1
            assert world.wallet(ann) == {**held, "held": 0}
        else:
            assert (done["state"], done["failure_code"]) == ("failed", "declined")
            assert _entered(done, "failed") == 1
            assert world.wallet(ann) == {"available": before, "pending": 0, "held": 0}


@pytest.mark.parametrize("still", ["requires_action", "processing"])
def test_a_payment_still_waiting_at_the_provider_stays_and_is_asked_once_per_age(
    database_url: str, still: str
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        if still == "requires_action":  # the payer never answers the challenge
            payment_id = world.top_up(ann, 5_000, card=THREE_DS_CARD).json()["id"]
            asked = world.watch_status("sandbox_card")
        else:  # the provider has not decided yet (its notification is still to come)
            payment_id = world.top_up(ann, 5_000).json()["id"]
            asked = world.watch_status(
                "sandbox_card",
                lambda response: (
                    response and dataclasses.replace(response, status=ProviderStatus.PROCESSING)
                ),
            )
        [later] = world.sender.take() or [None]
        before = world.payment(payment_id)
        assert before["state"] == still

        world.reconcile_due(payment_id)
        world.resume_interrupted()
        assert asked == [payment_id]
        world.resume_interrupted()  # asked already this age: not asked again
        world.resume_interrupted()
        assert asked == [payment_id]
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        assert asked == [payment_id, payment_id]
        after = world.payment(payment_id)
        assert after["state"] == still and after["history"] == before["history"]
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}
        if later is not None:  # its notification finishes it as usual
            world.deliver([later])
            assert world.payment(payment_id)["state"] == "succeeded"


@pytest.mark.parametrize(
    "answer", ["another_charge", "another_amount", "another_currency", "unknown"]
)
def test_a_status_not_about_the_payment_changes_nothing(database_url: str, answer: str) -> None:
    """A status naming another provider reference, amount or currency (not this payment's
    money: settling it would credit what the provider never moved for it), or a provider
    that no longer knows a reference it answered, is logged; the payment is not settled nor
    failed."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment_id = world.top_up(ann, 5_000).json()["id"]
        [lost] = world.sender.take()

        def other(response: ProviderResponse | None) -> ProviderResponse | None:
            if answer == "unknown" or response is None:
                return None
            if answer == "another_amount":
                return dataclasses.replace(response, amount_minor=5_001)
            if answer == "another_currency":
                return dataclasses.replace(response, currency="EUR")
            return dataclasses.replace(response, provider_reference="ch_another_charge")

        asked = world.watch_status("sandbox_card", other)
        before = world.payment(payment_id)
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        assert asked == [payment_id]
        after = world.payment(payment_id)
        assert after["state"] == "processing" and after["history"] == before["history"]
        assert after["failure_code"] is None
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}
        world.deliver([lost])  # the provider's own notification still applies
        assert world.payment(payment_id)["state"] == "succeeded"
        assert world.wallet(ann) == {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}


def test_a_confirmation_the_ledger_refused_is_applied_once_the_wallet_thaws(
    database_url: str,
) -> None:
    """The confirmation arrives while the payer's wallet is frozen: the ledger refuses the
    credit (`ledger_account_frozen`, processed: the notification is not retried) and the
    top-up stays `processing`. Reconciliation asks again once per age; once the wallet is
    thawed, the provider's status settles it, once."""
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment_id = world.top_up(ann, 5_000).json()["id"]
        [confirmation] = world.sender.take()
        [usd] = [
            item
            for item in world.client.get("/v1/me/wallets", headers=ann.auth).json()["items"]
            if item["currency"] == "USD"
        ]

        world.set_wallet_status(usd["id"], AccountStatus.FROZEN)
        world.deliver([confirmation])
        assert world.payment(payment_id)["state"] == "processing"
        world.reconcile_due(payment_id)
        world.resume_interrupted()  # still frozen: refused again, asked again next age
        assert world.payment(payment_id)["state"] == "processing"

        world.set_wallet_status(usd["id"], AccountStatus.ACTIVE)
        world.resume_interrupted()  # asked this age already: not before the next
        assert world.payment(payment_id)["state"] == "processing"
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        done = world.payment(payment_id)
        assert done["state"] == "succeeded" and _entered(done, "succeeded") == 1
        assert world.wallet(ann) == {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}

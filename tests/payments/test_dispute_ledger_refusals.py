"""A dispute whose money movement the ledger refuses for now (the wallet is frozen) is not
lost: the opening's hold refused leaves the dispute `opening` and the notification is
retried; a lost outcome's posting refused leaves it claimed (`losing`) and the notification
is retried. Recovery or the retry applies it once the wallet is thawed, with the same
transfer ids: once. Before, a frozen wallet's refusal of the hold opened the dispute
holding nothing and the notification was processed: the chargeback, once lost, came wholly
from chargeback losses while the wallet that received the money kept it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from billfold.ledger.types import AccountStatus
from billfold.payments.flows import disputes
from billfold.payments.flows.notifications import apply_stored
from payments.payments_support import User, World, internal_id

OPENED = "com.billfold.dispute.opened.v1"
LOST = "com.billfold.dispute.lost.v1"


def _assert_retried(world: World, notification_id: str, error: str) -> None:
    row = world.inbound_row(notification_id)
    assert (row.status, row.attempts) == ("received", 1), row.last_error
    assert error in (row.last_error or ""), row.last_error


def _wallet_id(world: World, user: User) -> str:
    response = world.client.get("/v1/me/wallets", headers=user.auth)
    [usd] = [item for item in response.json()["items"] if item["currency"] == "USD"]
    wallet_id: str = usd["id"]
    return wallet_id


def _dispute(world: World, payment_id: str) -> dict[str, Any]:
    [dispute] = world.payment(payment_id)["disputes"]
    return dict(dispute)


def _events(world: World, payment_id: str) -> list[str]:
    return [type_ for type_, _ in world.outbox(payment_id)]


@pytest.mark.parametrize("finisher", ["retry", "recovery", "both_at_once"])
def test_a_dispute_opened_on_a_frozen_wallet_holds_its_amount_once_the_wallet_thaws(
    database_url: str, finisher: str
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        payment_id, available = topped["id"], world.wallet(ann)["available"]
        wallet_id = _wallet_id(world, ann)
        card = world.runtime.sandboxes["sandbox_card"]
        world.set_wallet_status(wallet_id, AccountStatus.FROZEN)
        dispute_id = card.open_dispute(payment_id, amount_minor=500)
        [opened] = world.sender.take()
        notification_id = world.post_and_process(opened)

        _assert_retried(world, notification_id, "account_frozen")
        waiting = _dispute(world, payment_id)
        assert (waiting["state"], waiting["held_amount"]) == ("opening", "0")
        assert world.wallet(ann) == {"available": available, "pending": 0, "held": 0}
        assert OPENED not in _events(world, payment_id)
        world.resume_interrupted()  # still frozen: still opening, tried again next round
        assert _dispute(world, payment_id)["state"] == "opening"

        world.set_wallet_status(wallet_id, AccountStatus.ACTIVE)
        if finisher == "retry":
            world.retry_inbound_now(notification_id)
        elif finisher == "recovery":
            world.resume_interrupted()
            assert _dispute(world, payment_id)["state"] == "open"
            world.retry_inbound_now(notification_id)  # finds it open: a duplicate
        else:
            payload = dict(world.inbound_row(notification_id).payload)

            async def together() -> None:
                await asyncio.gather(
                    disputes.drive_dispute(world.runtime, internal_id(waiting["id"])),
                    apply_stored(world.runtime, payload, provider="sandbox_card"),
                )

            world.client.portal.call(together)
            world.retry_inbound_now(notification_id)
        row = world.inbound_row(notification_id)
        assert (row.status, row.attempts) == ("processed", 2), row.last_error
        held = _dispute(world, payment_id)
        assert (held["state"], held["held_amount"]) == ("open", "500")
        assert world.wallet(ann) == {"available": available - 500, "pending": 0, "held": 500}
        assert _events(world, payment_id).count(OPENED) == 1
        holds = [t for t in world.payment(payment_id)["transfers"] if t["step"].endswith(":hold")]
        assert len(holds) == 1
        world.resume_interrupted()  # nothing left to do
        assert _dispute(world, payment_id) == held

        card.resolve_dispute(payment_id, dispute_id=dispute_id, won=False, amount_minor=500)
        world.deliver()
        assert _dispute(world, payment_id)["state"] == "lost"
        assert world.wallet(ann) == {"available": available - 500, "pending": 0, "held": 0}
        assert world.system("chargeback_losses")["debits_posted"] == 0, "the wallet paid"
        assert world.system("clearing:sandbox_card")["credits_posted"] == 500


def test_a_dispute_lost_on_a_frozen_wallet_is_posted_once_the_wallet_thaws(
    database_url: str,
) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        topped = world.fund(ann, 1_000)
        payment_id, available = topped["id"], world.wallet(ann)["available"]
        wallet_id = _wallet_id(world, ann)
        card = world.runtime.sandboxes["sandbox_card"]
        dispute_id = card.open_dispute(payment_id, amount_minor=500)
        world.deliver()
        assert _dispute(world, payment_id)["state"] == "open"

        world.set_wallet_status(wallet_id, AccountStatus.FROZEN)
        card.resolve_dispute(payment_id, dispute_id=dispute_id, won=False, amount_minor=500)
        [lost] = world.sender.take()
        notification_id = world.post_and_process(lost)
        _assert_retried(world, notification_id, "AccountFrozen")
        assert _dispute(world, payment_id)["state"] == "losing"
        assert world.wallet(ann) == {"available": available - 500, "pending": 0, "held": 500}
        world.resume_interrupted()  # still frozen: still claimed
        assert _dispute(world, payment_id)["state"] == "losing"

        world.set_wallet_status(wallet_id, AccountStatus.ACTIVE)
        world.resume_interrupted()
        assert _dispute(world, payment_id)["state"] == "lost"
        world.retry_inbound_now(notification_id)
        assert world.inbound_row(notification_id).status == "processed"
        assert world.wallet(ann) == {"available": available - 500, "pending": 0, "held": 0}
        assert world.system("chargeback_losses")["debits_posted"] == 0
        assert _events(world, payment_id).count(LOST) == 1


def test_a_dispute_opened_by_the_tenant_on_a_frozen_wallet_waits_to_hold(
    database_url: str,
) -> None:
    """The API records it (201) `opening`, holding nothing yet; recovery opens it once the
    merchant's wallet thaws, holding what the wallet has then."""
    with World(database_url, fees=False, embedded_worker=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]
        wallets = world.client.get(f"/v1/merchants/{shop}/wallets", headers=world.api).json()
        [usd] = [item for item in wallets["items"] if item["currency"] == "USD"]
        world.set_wallet_status(usd["id"], AccountStatus.FROZEN)
        opened = world.client.post(
            f"/v1/payments/{payment_id}/disputes", json={"amount": 600}, headers=world.api
        )
        assert opened.status_code == 201, opened.text
        [waiting] = opened.json()["disputes"]
        assert (waiting["state"], waiting["held_amount"]) == ("opening", "0")
        assert world.merchant_wallet(shop) == {"available": 1_000, "pending": 0, "held": 0}

        world.set_wallet_status(usd["id"], AccountStatus.ACTIVE)
        world.resume_interrupted()
        held = _dispute(world, payment_id)
        assert (held["state"], held["held_amount"]) == ("open", "600")
        assert world.merchant_wallet(shop) == {"available": 400, "pending": 0, "held": 600}
        assert _events(world, payment_id).count(OPENED) == 1

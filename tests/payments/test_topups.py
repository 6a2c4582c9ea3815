"""Top-ups by card and bank transfer through the sandbox, with signed notifications."""

from __future__ import annotations

import pytest

from billfold.connectors.signatures import CHALLENGE
from payments.payments_support import World, fee_of, problem


def test_a_card_top_up_is_pending_until_confirmed_then_available(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        response = world.top_up(ann, 10_000)
        assert response.status_code == 201, response.text
        payment = response.json()
        assert payment["state"] == "processing"
        assert world.wallet(ann) == {"available": 0, "pending": 10_000, "held": 0}
        assert world.system("clearing:sandbox_card")["debits_pending"] == 10_000
        world.deliver()
        settled = world.payment(payment["id"])
        assert settled["state"] == "succeeded"
        assert [change["to_state"] for change in settled["history"]] == [
            "created",
            "processing",
            "succeeded",
        ]
        assert world.wallet(ann) == {"available": 10_000 - fee_of(10_000), "pending": 0, "held": 0}
        assert [fee["amount"] for fee in settled["fees"]] == [str(fee_of(10_000))]
        assert world.system("fee_revenue")["credits_posted"] == fee_of(10_000)
        assert world.system("clearing:sandbox_card")["debits_posted"] == 10_000
        steps = {transfer["step"] for transfer in settled["transfers"]}
        assert steps == {"hold", "settle", "settle:fee:0"}
        world.assert_books()


@pytest.mark.parametrize(
    ("card", "failure"),
    [("4000000000000002", "card_declined"), ("4000000000009995", "insufficient_funds")],
)
def test_a_declined_card_fails_and_releases_the_pending_money(
    database_url: str, card: str, failure: str
) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card=card).json()
        assert payment["state"] == "failed"
        assert payment["failure_code"] == failure
        world.deliver()  # the charge.failed notification changes nothing more
        assert world.payment(payment["id"])["state"] == "failed"
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        world.assert_books()


def test_a_3ds_challenge_waits_for_the_payer(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card="4000000000003220").json()
        assert payment["state"] == "requires_action"
        assert payment["next_action_url"].startswith("https://sandbox.billfold.dev/3ds/")
        assert world.deliver() == []
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment["id"], succeeded=True)
        world.deliver()
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)
        world.assert_books()


def test_a_failed_3ds_challenge_fails_the_top_up(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card="4000000000003220").json()
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment["id"], succeeded=False)
        world.deliver()
        failed = world.payment(payment["id"])
        assert failed["state"] == "failed"
        assert failed["failure_code"] == "authentication_failed"
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        world.assert_books()


def test_a_provider_timeout_leaves_it_processing_until_the_notification(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card="4000000000000119").json()
        assert payment["state"] == "processing"
        assert payment["history"][-1]["reason"] == "provider_timeout"
        world.deliver()
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)
        world.assert_books()


def test_duplicate_notifications_move_money_once(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card="4000000000000259").json()
        notifications = world.sender.take()
        assert len(notifications) == 2 and notifications[0].body == notifications[1].body
        stored = [r.json() for r in world.deliver(notifications)]
        assert [r["duplicate"] for r in stored] == [False, True]  # stored once
        assert stored[0]["notification_id"] == stored[1]["notification_id"]
        world.deliver(notifications)  # and once more, much later
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)
        assert world.payment(payment["id"])["state"] == "succeeded"
        world.assert_books()


def test_out_of_order_notifications_are_ignored_once_settled(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000, card="4000000000000341").json()
        world.deliver()
        reversed_order = world.top_up(ann, 3_000, card="4000000000000341").json()
        late_first = list(reversed(world.sender.take()))
        world.deliver(late_first[:1])  # the stale one, applied by the worker: ignored
        assert world.payment(reversed_order["id"])["state"] == "processing"
        world.deliver(late_first[1:])
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.payment(reversed_order["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 8_000 - fee_of(5_000) - fee_of(3_000)
        world.assert_books()


def test_a_bank_transfer_top_up_follows_the_amount_rules(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        body = {"method": "bank_transfer", "instrument": "DE89370400440532013000"}
        declined = world.top_up(ann, 5_001, **body).json()
        assert declined["state"] == "failed"
        ok = world.top_up(ann, 5_000, **body).json()
        assert ok["provider"] == "sandbox_bank"
        world.deliver()
        assert world.payment(ok["id"])["state"] == "succeeded"
        assert world.system("clearing:sandbox_bank")["debits_posted"] == 5_000
        world.assert_books()


def test_a_forged_or_stale_notification_is_refused(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.top_up(ann, 5_000)
        [notification] = world.sender.take()
        url = f"/v1/connectors/{notification.provider}/notifications"
        tampered = notification.body.replace(b"5000", b"9000")
        response = world.client.post(url, content=tampered, headers=notification.headers)
        problem(response, 401, "invalid_signature")
        # RFC 9110: a 401 names the scheme that would be accepted.
        assert response.headers["www-authenticate"] == CHALLENGE
        problem(world.client.post(url, content=notification.body), 401, "invalid_signature")
        stale = {"Billfold-Signature": "t=1000,v1=" + "0" * 64}
        problem(
            world.client.post(url, content=notification.body, headers=stale),
            401,
            "invalid_signature",
        )
        unknown = world.client.post(
            "/v1/connectors/nope/notifications",
            content=notification.body,
            headers=notification.headers,
        )
        problem(unknown, 404, "unknown_provider")
        assert world.wallet(ann)["available"] == 0
        world.assert_books()


def test_bad_top_up_input_is_a_4xx(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        for body in (
            {"amount": 0, "currency": "USD", "method": "card", "instrument": "4242424242424242"},
            {"amount": 10, "currency": "usd", "method": "card", "instrument": "4242424242424242"},
            {"amount": 10, "currency": "USD", "method": "cash", "instrument": "4242424242424242"},
            {"amount": "1e3", "currency": "USD", "method": "card", "instrument": "42"},
        ):
            response = world.client.post("/v1/me/top-ups", json=body, headers=ann.auth)
            problem(response, 422, "validation_failed")
        unknown = world.top_up(ann, 100, currency="XXZ")
        problem(unknown, 422, "unsupported_currency")
        problem(world.client.post("/v1/me/top-ups", json={}), 401, "unauthorized")

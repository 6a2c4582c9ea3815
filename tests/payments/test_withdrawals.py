"""Withdrawals: the amount and fee are held until the provider confirms; failure voids."""

from __future__ import annotations

from typing import Any

from payments.payments_support import World, fee_of, problem

IBAN = "DE89370400440532013000"


def _withdraw(world: World, user: Any, amount: int, method: str = "bank_transfer") -> Any:
    body = {"amount": amount, "currency": "USD", "method": method, "destination": IBAN}
    return world.client.post("/v1/me/withdrawals", json=body, headers=user.auth)


def test_a_withdrawal_holds_then_settles_on_confirmation(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        before = world.wallet(ann)["available"]
        payment = _withdraw(world, ann, 4_000).json()
        assert payment["state"] == "processing"
        held = 4_000 + fee_of(4_000)
        assert world.wallet(ann) == {"available": before - held, "pending": 0, "held": held}
        world.deliver()
        done = world.payment(payment["id"])
        assert done["state"] == "succeeded"
        assert world.wallet(ann) == {"available": before - held, "pending": 0, "held": 0}
        assert world.system("clearing:sandbox_bank")["credits_posted"] == 4_000
        assert [fee["amount"] for fee in done["fees"]] == [str(fee_of(4_000))]
        world.assert_books()


def test_a_failed_payout_voids_the_hold(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        before = world.wallet(ann)["available"]
        payment = _withdraw(world, ann, 4_001).json()  # ...01: the bank declines
        assert payment["state"] == "processing"
        world.deliver()
        failed = world.payment(payment["id"])
        assert failed["state"] == "failed"
        assert failed["failure_code"] == "declined"
        assert world.wallet(ann) == {"available": before, "pending": 0, "held": 0}
        steps = {transfer["step"] for transfer in failed["transfers"]}
        assert "hold:void" in steps and "hold:post" not in steps
        world.assert_books()


def test_a_withdrawal_beyond_the_balance_is_refused_and_moves_nothing(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 1_000)
        problem(_withdraw(world, ann, 1_000), 422, "insufficient_funds")  # the fee tips it
        assert world.wallet(ann) == {"available": 1_000, "pending": 0, "held": 0}
        world.assert_books()


def test_payout_timeouts_and_duplicates_move_money_once(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 20_000)
        before = world.wallet(ann)["available"]
        timed_out = _withdraw(world, ann, 3_008, method="card").json()
        assert timed_out["state"] == "processing"
        duplicated = _withdraw(world, ann, 2_009).json()
        notifications = world.sender.take()
        assert len(notifications) == 3
        world.deliver(notifications + notifications)
        assert world.payment(timed_out["id"])["state"] == "succeeded"
        assert world.payment(duplicated["id"])["state"] == "succeeded"
        spent = 3_008 + fee_of(3_008) + 2_009 + fee_of(2_009)
        assert world.wallet(ann) == {"available": before - spent, "pending": 0, "held": 0}
        world.assert_books()


def test_a_late_contradicting_notification_never_reverses_a_settled_payout(
    database_url: str,
) -> None:
    import json
    import time

    from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header

    with World(database_url) as world:
        ann = world.user()
        world.fund(ann, 10_000)
        payment = _withdraw(world, ann, 4_000).json()
        [confirmation] = world.sender.take()
        world.deliver([confirmation])
        settled = world.wallet(ann)
        event = json.loads(confirmation.body)
        event["id"], event["type"] = "evt_late_failure", "payout.failed"
        event["data"]["failure_code"] = "declined"
        body = json.dumps(event).encode()
        secret = world.runtime.sandboxes["sandbox_bank"].secret
        header = signature_header(secret=secret, timestamp_s=int(time.time()), body=body)
        [late] = world.deliver(
            [type(confirmation)(confirmation.provider, body, {SIGNATURE_HEADER: header})]
        )
        assert late.json()["duplicate"] is False  # a new event id, applied and ignored
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann) == settled
        world.assert_books()

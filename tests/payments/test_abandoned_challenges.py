"""A top-up whose payer never answers its 3-D Secure challenge ends: once it has waited in
`requires_action` longer than the action timeout (`payments_action_timeout_s`, from when it
entered that state), the first reconciliation whose provider status still says the
challenge is unanswered voids its pending amount and fails it (`authentication_abandoned`),
with its `failed` event. The provider is asked first; a success racing the ending is
decided by the ledger (one outcome, money moved once), and a success arriving after it
changes nothing (`ignored_abandoned`, for an operator)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update
from structlog.testing import capture_logs

from billfold.connectors.senders import OutgoingNotification
from billfold.connectors.types import ProviderResponse, ProviderStatus, ProviderTimeout
from billfold.events.models import InboundEvent
from billfold.identity.types import Mode
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags
from billfold.payments.flows import recovery, topups
from billfold.payments.flows.notifications import FailureInFlightError, apply_stored
from billfold.payments.models import PaymentStateChange
from billfold.payments.steps import step_id
from billfold.wallets.service import ledger_tenant_of
from payments.payments_support import CrashError, World, crashing, fee_of, internal_id

THREE_DS_CARD = "4000000000003220"
FAILED = "com.billfold.payment.failed.v1"
SUCCEEDED = "com.billfold.payment.succeeded.v1"
Answer = Callable[[ProviderResponse | None], ProviderResponse | None]


def _challenged_long_ago(world: World, payment_id: str) -> None:
    """The challenge was issued a little longer ago than the action timeout (the history
    row of entering `requires_action`), and reconciliation is due."""
    age_ns = int((world.runtime.action_timeout_s + 1) * 1_000_000_000)

    async def write() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            await session.execute(
                update(PaymentStateChange)
                .where(
                    PaymentStateChange.payment_id == internal_id(payment_id),
                    PaymentStateChange.to_state == "requires_action",
                )
                .values(at=time.time_ns() - age_ns)
            )

    world.client.portal.call(write)
    world.reconcile_due(payment_id)


def _payload(world: World, notification: OutgoingNotification) -> dict[str, Any]:
    """The notification as the route stores it."""
    parsed = world.runtime.sandboxes[notification.provider].parse_notification(
        body=notification.body,
        headers={name.lower(): value for name, value in notification.headers.items()},
        now_s=int(time.time()),
        tolerance_s=300,
    )
    return {**dataclasses.asdict(parsed), "type": parsed.type.value}


def _changes(payment: dict[str, Any]) -> list[tuple[str | None, str, str | None]]:
    return [(c["from_state"], c["to_state"], c["reason"]) for c in payment["history"]]


def _entered(payment: dict[str, Any], state: str) -> int:
    return sum(1 for change in payment["history"] if change["to_state"] == state)


def _challenged(world: World) -> tuple[Any, str]:
    ann = world.user()
    created = world.top_up(ann, 5_000, card=THREE_DS_CARD)
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    assert world.payment(payment_id)["state"] == "requires_action"
    assert world.sender.take() == []  # nothing is notified until the payer answers
    return ann, payment_id


def _inbound_status(world: World, notification_id: str) -> str:
    async def read() -> str:
        async with world.app.state.unit_of_work.read() as session:
            row = await session.get(InboundEvent, internal_id(notification_id))
            assert row is not None
            return row.status

    return world.client.portal.call(read)


@pytest.mark.parametrize("timeout_s", [None, 3_600])
def test_an_abandoned_challenge_is_failed_once_past_the_action_timeout(
    database_url: str, timeout_s: int | None
) -> None:
    settings = {} if timeout_s is None else {"payments_action_timeout_s": timeout_s}
    with World(database_url, embedded_worker=False, **settings) as world:
        assert world.runtime.action_timeout_s == (timeout_s or 86_400)
        ann, payment_id = _challenged(world)
        asked = world.watch_status("sandbox_card")

        world.reconcile_due(payment_id)  # reconciled, but the challenge is younger than the timeout
        world.resume_interrupted()
        assert asked == [payment_id]
        assert world.payment(payment_id)["state"] == "requires_action"
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        _challenged_long_ago(world, payment_id)
        world.resume_interrupted()
        assert asked == [payment_id, payment_id], "the provider is asked first"
        ended = world.payment(payment_id)
        assert (ended["state"], ended["failure_code"]) == ("failed", "authentication_abandoned")
        assert ended["history"][-1]["from_state"] == "requires_action"
        assert ended["history"][-1]["reason"] == "authentication_abandoned"
        assert _entered(ended, "failed") == 1
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert world.system("clearing:sandbox_card")["debits_pending"] == 0
        events = [type_ for type_, _ in world.outbox(payment_id)]
        assert events.count(FAILED) == 1 and events[-1] == FAILED
        [(_, data)] = [(t, d) for t, d in world.outbox(payment_id) if t == FAILED]
        assert (data["state"], data["previous_state"]) == ("failed", "requires_action")

        world.reconcile_due(payment_id)  # ended: never asked about again
        world.resume_interrupted()
        assert asked == [payment_id, payment_id]
        assert world.payment(payment_id)["history"] == ended["history"]


def test_a_success_after_the_abandonment_changes_nothing(database_url: str) -> None:
    """The payer answers the challenge after recovery ended the top-up, and the provider
    took the money: an operator's case. Logged, processed (`ignored_abandoned`), and the
    failed top-up is neither resurrected nor credited."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _challenged(world)
        _challenged_long_ago(world, payment_id)
        world.resume_interrupted()
        ended = world.payment(payment_id)
        assert ended["state"] == "failed"

        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=True)
        [late] = world.sender.take()
        [response] = world.deliver([late])
        assert _inbound_status(world, response.json()["notification_id"]) == "processed"
        outcome = world.client.portal.call(
            lambda: apply_stored(world.runtime, _payload(world, late), provider=late.provider)
        )
        assert outcome == "ignored_abandoned"
        assert world.payment(payment_id)["history"] == ended["history"]
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert [type_ for type_, _ in world.outbox(payment_id)].count(SUCCEEDED) == 0
        world.reconcile_due(payment_id)
        world.resume_interrupted()  # a failed top-up is not reconciled: nothing settles it
        assert world.payment(payment_id)["state"] == "failed"


@pytest.mark.parametrize("answer", ["processing", "unavailable", "unknown"])
def test_a_challenge_past_the_timeout_ends_only_on_the_providers_word(
    database_url: str, answer: str
) -> None:
    """Past the timeout, but the provider does not say the challenge is still unanswered
    (the payer answered and the outcome is on its way; or it cannot be asked; or it no
    longer knows the charge): the top-up is left as it is, asked again next age."""

    def answered(response: ProviderResponse | None) -> ProviderResponse | None:
        if answer == "unavailable":
            raise ProviderTimeout("the provider did not answer (test)")
        if answer == "unknown" or response is None:
            return None
        return dataclasses.replace(response, status=ProviderStatus.PROCESSING)

    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _challenged(world)
        before = world.payment(payment_id)
        asked = world.watch_status("sandbox_card", answered)
        _challenged_long_ago(world, payment_id)
        world.resume_interrupted()
        assert asked == [payment_id]
        after = world.payment(payment_id)
        assert after["state"] == "requires_action"
        assert _changes(after) == _changes(before)
        assert world.wallet(ann) == {"available": 0, "pending": 5_000, "held": 0}

        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=True)
        world.deliver()  # its notification still finishes it as usual
        assert world.payment(payment_id)["state"] == "succeeded"
        assert world.wallet(ann) == {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}


RACES = 4


def test_a_success_racing_the_abandonment_records_one_outcome(database_url: str) -> None:
    """The payer answers at the very moment recovery ends the top-up (its status, asked a
    moment before, still said `requires_action`): the ledger posts or voids the pending
    amount once, and the payment enters one final state, once, with one event."""
    with World(database_url, embedded_worker=False) as world:
        raced: list[tuple[Any, str, OutgoingNotification]] = []
        for _ in range(RACES):
            ann, payment_id = _challenged(world)
            world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=True)
            [late] = world.sender.take()
            raced.append((ann, payment_id, late))
            _challenged_long_ago(world, payment_id)
        world.watch_status(
            "sandbox_card",
            lambda r: r and dataclasses.replace(r, status=ProviderStatus.REQUIRES_ACTION),
        )
        waiting_since_ns = time.time_ns() - int(world.runtime.reconcile_after_s * 1e9)

        async def together() -> list[Any]:
            return await asyncio.gather(
                *(
                    recovery.reconcile_outcome(
                        world.runtime, internal_id(payment_id), waiting_since_ns=waiting_since_ns
                    )
                    for _, payment_id, _ in raced
                ),
                *(
                    apply_stored(world.runtime, _payload(world, late), provider=late.provider)
                    for _, _, late in raced
                ),
                return_exceptions=True,
            )

        results = world.client.portal.call(together)
        for result in results:  # a success that met a failure in flight is retried
            assert not isinstance(result, BaseException) or isinstance(
                result, FailureInFlightError
            ), result
        for ann, payment_id, late in raced:
            again = world.client.portal.call(  # the retry, or a redelivery: changes nothing
                lambda late=late: apply_stored(
                    world.runtime, _payload(world, late), provider=late.provider
                )
            )
            done = world.payment(payment_id)
            events = [type_ for type_, _ in world.outbox(payment_id)]
            if done["state"] == "succeeded":
                assert again == "ignored_succeeded"
                assert _entered(done, "succeeded") == 1 and _entered(done, "failed") == 0
                assert (events.count(SUCCEEDED), events.count(FAILED)) == (1, 0)
                credited = {"available": 5_000 - fee_of(5_000), "pending": 0, "held": 0}
                assert world.wallet(ann) == credited
            else:
                assert (done["state"], done["failure_code"]) == (
                    "failed",
                    "authentication_abandoned",
                )
                assert again == "ignored_abandoned"
                assert _entered(done, "failed") == 1 and _entered(done, "succeeded") == 0
                assert (events.count(SUCCEEDED), events.count(FAILED)) == (0, 1)
                assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
                assert done["fees"] == []


def _abandoned_then_crashed(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A challenge past the action timeout that recovery ends, and the process dies between
    the ledger voiding the pending amount and the failure being recorded: the top-up is
    left `requires_action` with nothing pending."""
    ann, payment_id = _challenged(world)
    _challenged_long_ago(world, payment_id)
    with monkeypatch.context() as crash:
        crash.setattr(topups, "apply_steps", crashing(topups.apply_steps, after_ledger=True))
        with pytest.raises(CrashError):
            world.resume_interrupted()
    left = world.payment(payment_id)
    assert (left["state"], left["failure_code"]) == ("requires_action", None)
    assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
    assert world.system("clearing:sandbox_card")["debits_pending"] == 0
    assert FAILED not in [type_ for type_, _ in world.outbox(payment_id)]
    return ann, payment_id


def _assert_abandoned_once(world: World, ann: Any, payment_id: str) -> dict[str, Any]:
    ended = world.payment(payment_id)
    assert (ended["state"], ended["failure_code"]) == ("failed", "authentication_abandoned")
    assert ended["history"][-1]["from_state"] == "requires_action"
    assert ended["history"][-1]["reason"] == "authentication_abandoned"
    assert _entered(ended, "failed") == 1 and _entered(ended, "succeeded") == 0
    events = [type_ for type_, _ in world.outbox(payment_id)]
    assert (events.count(FAILED), events.count(SUCCEEDED)) == (1, 0)
    assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
    assert world.system("clearing:sandbox_card")["debits_pending"] == 0
    assert ended["fees"] == []
    return ended


def test_an_abandonment_interrupted_before_its_failure_is_finished_by_the_next_round(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No late success: the next reconciliation finds the challenge still unanswered and
    finishes the abandonment, once (the ledger answers the same void `exists`)."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _abandoned_then_crashed(world, monkeypatch)
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        ended = _assert_abandoned_once(world, ann, payment_id)

        world.reconcile_due(payment_id)  # ended: nothing more
        world.resume_interrupted()
        assert world.payment(payment_id)["history"] == ended["history"]


def test_a_late_success_after_an_interrupted_abandonment_finishes_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died between the abandonment's void and its failure, then the payer
    answered the challenge after all and the provider's `charge.succeeded` arrives: it
    finishes the abandonment (failed `authentication_abandoned`, one `failed` event) and is
    processed as after any abandonment (`ignored_abandoned`), not retried until its
    schedule ends; the wallet is never credited."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _abandoned_then_crashed(world, monkeypatch)
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=True)
        [late] = world.sender.take()
        with capture_logs() as logs:
            notification_id = world.post_and_process(late)
        row = world.inbound_row(notification_id)
        assert (row.status, row.last_error) == ("processed", None)
        assert [entry["outcome"] for entry in logs if entry.get("outcome")] == ["ignored_abandoned"]
        assert "payments.notification_after_abandonment" in [entry["event"] for entry in logs]
        ended = _assert_abandoned_once(world, ann, payment_id)

        again = world.client.portal.call(  # a redelivery changes nothing
            lambda: apply_stored(world.runtime, _payload(world, late), provider=late.provider)
        )
        assert again == "ignored_abandoned"
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        assert world.payment(payment_id)["history"] == ended["history"]
        _assert_abandoned_once(world, ann, payment_id)


def test_a_late_failure_after_an_interrupted_abandonment_finishes_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same crash, then the payer failed the challenge late and the provider's
    `charge.failed` arrives: the pending amount is gone (voided by the abandonment), so it
    finishes the abandonment there and then, as the ledger recorded it (failed
    `authentication_abandoned`, one `failed` event), rather than leaving the top-up
    `requires_action` until a reconciliation comes by."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _abandoned_then_crashed(world, monkeypatch)
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=False)
        [late] = world.sender.take()
        notification_id = world.post_and_process(late)
        row = world.inbound_row(notification_id)
        assert (row.status, row.last_error) == ("processed", None)
        ended = _assert_abandoned_once(world, ann, payment_id)
        world.reconcile_due(payment_id)
        world.resume_interrupted()
        assert world.payment(payment_id)["history"] == ended["history"]
        _assert_abandoned_once(world, ann, payment_id)


def test_reconciliation_finishes_an_interrupted_abandonment_the_provider_now_says_succeeded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same crash; the payer answered late and its notification is lost: the provider's
    status now says `succeeded`, but the pending amount is gone (voided by the abandonment),
    so reconciliation finishes the abandonment instead of asking forever; the notification,
    delivered later after all, changes nothing."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _abandoned_then_crashed(world, monkeypatch)
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=True)
        [late] = world.sender.take()  # lost, for now
        waiting_since_ns = time.time_ns() - int(world.runtime.reconcile_after_s * 1e9)
        world.reconcile_due(payment_id)
        outcome = world.client.portal.call(
            lambda: recovery.reconcile_outcome(
                world.runtime, internal_id(payment_id), waiting_since_ns=waiting_since_ns
            )
        )
        assert outcome == "abandoned_applied"
        ended = _assert_abandoned_once(world, ann, payment_id)

        notification_id = world.post_and_process(late)
        assert world.inbound_row(notification_id).status == "processed"
        assert world.payment(payment_id)["history"] == ended["history"]
        _assert_abandoned_once(world, ann, payment_id)


def test_a_provider_failure_interrupted_past_the_action_timeout_keeps_its_code(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending amount voided by the provider's failure (not by an abandonment), the
    failure not recorded (a crash), on a challenge past the action timeout: it is not taken
    for an abandonment. Recovery asks the provider, which says failed, and records its
    `failure_code`; the notification's retry then changes nothing."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _challenged(world)
        world.runtime.sandboxes["sandbox_card"].complete_challenge(payment_id, succeeded=False)
        [declined] = world.sender.take()
        with monkeypatch.context() as crash:
            crash.setattr(topups, "apply_steps", crashing(topups.apply_steps, after_ledger=True))
            notification_id = world.post_and_process(declined)
        assert world.inbound_row(notification_id).status == "received"  # to be retried
        assert world.payment(payment_id)["state"] == "requires_action"
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}

        _challenged_long_ago(world, payment_id)
        world.resume_interrupted()
        failed = world.payment(payment_id)
        assert (failed["state"], failed["failure_code"]) == ("failed", "authentication_failed")
        assert _entered(failed, "failed") == 1
        assert [type_ for type_, _ in world.outbox(payment_id)].count(FAILED) == 1
        world.retry_inbound_now(notification_id)
        assert world.inbound_row(notification_id).status == "processed"
        assert world.payment(payment_id)["history"] == failed["history"]
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}


def test_an_abandonment_interrupted_under_the_shared_void_step_is_finished(
    database_url: str,
) -> None:
    """An ending interrupted under an earlier release, which voided the pending amount with
    the provider failure's step (`void`): the next reconciliation whose provider status
    still says `requires_action` finishes it, once, as that release did."""
    with World(database_url, embedded_worker=False) as world:
        ann, payment_id = _challenged(world)
        _challenged_long_ago(world, payment_id)
        pay = internal_id(payment_id)
        void = NewTransfer(
            id=step_id(pay, "void"),
            tenant_id=ledger_tenant_of(world.tenant_id, Mode.TEST),
            pending_id=step_id(pay, "hold"),
            flags=int(TransferFlags.VOID_PENDING),
            user_data=payment_id,
        )
        [result] = world.client.portal.call(lambda: world.ledger.submit([void]))
        assert result.status is CreateTransferStatus.OK
        assert world.payment(payment_id)["state"] == "requires_action"
        world.resume_interrupted()
        _assert_abandoned_once(world, ann, payment_id)

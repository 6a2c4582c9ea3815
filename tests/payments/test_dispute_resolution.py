"""Resolving a dispute: an outcome is claimed before the ledger moves money, so opposite
resolutions at once apply one outcome and the dispute's state always says what the ledger
did; a resolution a crash interrupted is completed by recovery; each stable state a dispute
enters is an event, ordered with its payment's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from billfold.kit.errors import BillfoldError
from billfold.payments.flows import disputes
from payments.payments_support import CrashError, World, crashing, internal_id, problem


def _open(world: World, payment_id: str, amount: int) -> dict[str, Any]:
    opened = world.client.post(
        f"/v1/payments/{payment_id}/disputes", json={"amount": amount}, headers=world.api
    )
    assert opened.status_code == 201, opened.text
    dispute: dict[str, Any] = opened.json()["disputes"][-1]
    return dispute


def _resolve(world: World, dispute_id: str, outcome: str) -> Any:
    return world.client.post(
        f"/v1/disputes/{dispute_id}/resolve", json={"outcome": outcome}, headers=world.api
    )


def _state(world: World, payment_id: str, dispute_id: str) -> str:
    [dispute] = [d for d in world.payment(payment_id)["disputes"] if d["id"] == dispute_id]
    return str(dispute["state"])


@pytest.mark.parametrize("held", [False, True], ids=["nothing_held", "held"])
def test_opposite_resolutions_at_once_apply_one_outcome(database_url: str, held: bool) -> None:
    """A `won` and a `lost` of one dispute sent together: one applies, the other is refused,
    and the state is the outcome the ledger applied. Nothing held is the case the ledger
    cannot decide (a lost posts the chargeback loss, a won moves nothing)."""
    with World(database_url, fees=False) as world:
        ann, bob, shop = world.user(), world.user(), world.merchant()
        world.fund(ann, 1_000)
        if held:
            payment_id = world.paid(ann, shop, 1_000)["id"]
            dispute = _open(world, payment_id, 1_000)  # holds all the merchant has
        else:  # Ann pays Bob, who spends it all: a dispute of her payment holds nothing
            sent = world.client.post(
                "/v1/me/p2p",
                json={"recipient": bob.handle, "amount": 1_000, "currency": "USD"},
                headers=ann.auth,
            )
            assert sent.status_code == 201, sent.text
            payment_id = sent.json()["id"]
            world.paid(bob, shop, 1_000)
            dispute = _open(world, payment_id, 600)
        assert dispute["held_amount"] == ("1000" if held else "0")

        async def race() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        disputes.resolve_dispute(
                            world.runtime, dispute_id=internal_id(dispute["id"]), won=won
                        )
                        for won in (True, False, True, False)
                    ),
                    return_exceptions=True,
                )
            )

        results = world.client.portal.call(race)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, BillfoldError) for r in refused), refused
        assert {r.code for r in refused if isinstance(r, BillfoldError)} == {
            "invalid_state_transition"
        }
        assert results.count("applied") == 1
        outcome = _state(world, payment_id, dispute["id"])
        losses = world.system("chargeback_losses")["debits_posted"]
        if held:
            merchant = world.merchant_wallet(shop)
            assert merchant["held"] == 0
            assert merchant["available"] == (1_000 if outcome == "won" else 0)
            assert losses == 0
        else:
            assert losses == (600 if outcome == "lost" else 0)
            assert world.wallet(ann)["available"] == (600 if outcome == "lost" else 0)
        events = [t for t, _ in world.outbox(payment_id) if t.startswith("com.billfold.dispute")]
        assert events.count(f"com.billfold.dispute.{outcome}.v1") == 1
        assert not any(t.endswith((".won.v1", ".lost.v1")) and outcome not in t for t in events)
        world.assert_books()


@pytest.mark.parametrize("finish", ["recovery", "retry"])
@pytest.mark.parametrize("crash", ["before_ledger", "after_ledger"])
def test_a_resolution_a_crash_interrupted_is_completed(
    database_url: str, monkeypatch: pytest.MonkeyPatch, crash: str, finish: str
) -> None:
    """The claim survives the crash: meanwhile the other outcome is refused, and recovery
    or a retry of the same outcome applies the claimed one, once."""
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]
        dispute = _open(world, payment_id, 1_000)
        real = disputes.apply_steps
        after_ledger = crash == "after_ledger"
        monkeypatch.setattr(disputes, "apply_steps", crashing(real, after_ledger=after_ledger))
        with pytest.raises(CrashError):
            _resolve(world, dispute["id"], "lost")
        monkeypatch.setattr(disputes, "apply_steps", real)
        assert _state(world, payment_id, dispute["id"]) == "losing"
        problem(_resolve(world, dispute["id"], "won"), 409, "invalid_state_transition")
        if finish == "recovery":
            world.resume_interrupted()
        else:
            retried = _resolve(world, dispute["id"], "lost")
            assert retried.status_code == 200, retried.text
        assert _state(world, payment_id, dispute["id"]) == "lost"
        assert world.merchant_wallet(shop) == {"available": 0, "pending": 0, "held": 0}
        assert world.wallet(ann)["available"] == 1_000
        again = _resolve(world, dispute["id"], "lost")
        assert again.status_code == 200, again.text
        types = [t for t, _ in world.outbox(payment_id)]
        assert types.count("com.billfold.dispute.lost.v1") == 1
        world.assert_books()


def test_each_stable_state_a_dispute_enters_is_an_event(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]
        dispute = _open(world, payment_id, 700)
        assert _resolve(world, dispute["id"], "lost").status_code == 200
        assert _resolve(world, dispute["id"], "lost").status_code == 200  # a duplicate
        events = world.outbox(payment_id)
    assert [t for t, _ in events] == [
        "com.billfold.payment.created.v1",
        "com.billfold.payment.authorized.v1",
        "com.billfold.payment.captured.v1",
        "com.billfold.dispute.opened.v1",
        "com.billfold.dispute.lost.v1",
    ]
    opened, lost = events[3][1], events[4][1]
    assert opened == {
        "id": dispute["id"],
        "payment_id": payment_id,
        "state": "open",
        "amount": "700",
        "held_amount": "700",
        "currency": "USD",
        "opened_by": "tenant",
        "reason": None,
        "provider_dispute_id": None,
        "updated_at": opened["updated_at"],
    }
    assert isinstance(opened["updated_at"], int)
    assert (lost["state"], lost["held_amount"]) == ("lost", "700")
    assert lost["updated_at"] >= opened["updated_at"]


def test_disputes_and_refunds_never_give_back_more_than_was_paid(database_url: str) -> None:
    """Disputes not won and refunds share what was captured: a payer cannot be paid back
    twice, by a second dispute or by a refund of disputed money."""
    with World(database_url, fees=False) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 2_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]
        world.paid(ann, shop, 1_000)  # the merchant has more than this payment's money
        refund = world.client.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": 300}, headers=world.api
        )
        assert refund.status_code == 201, refund.text
        first = _open(world, payment_id, 500)
        too_much = world.client.post(
            f"/v1/payments/{payment_id}/disputes", json={"amount": 201}, headers=world.api
        )
        assert problem(too_much, 422, "refund_exceeds_captured")["disputable"] == "200"
        refused = world.client.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": 201}, headers=world.api
        )
        assert problem(refused, 422, "refund_exceeds_captured")["refundable"] == "200"
        assert _resolve(world, first["id"], "won").status_code == 200
        # A dispute won claims nothing back: its amount is disputable or refundable again.
        again = _open(world, payment_id, 400)
        rest = world.client.post(f"/v1/payments/{payment_id}/refunds", json={}, headers=world.api)
        assert rest.status_code == 201, rest.text
        assert rest.json()["refunded_amount"] == "600"
        assert _resolve(world, again["id"], "lost").status_code == 200
        assert world.wallet(ann)["available"] == 1_000  # 300 + 300 refunded, 400 charged back
        world.assert_books()

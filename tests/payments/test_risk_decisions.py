"""Every P2P payment and money request passes a risk decision before the ledger: allow,
challenge (step-up bound to the movement), block (nothing moves) and review (held as
pending transfers until approved, rejected or expired), on both backends."""

from __future__ import annotations

from billfold.kit.ids import format_id
from payments.payments_support import World, fee_of, problem
from payments.risk_support import (
    BLOCK,
    CHALLENGE,
    REVIEW,
    case,
    decisions,
    expire,
    install,
    lapse,
    resolve,
    respond,
    step_up,
    totp,
)


def _send(world: World, sender: object, recipient: str, amount: int, **fields: object) -> object:
    body = {"recipient": recipient, "amount": amount, "currency": "USD", **fields}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)  # type: ignore[attr-defined]


def test_an_allowed_p2p_moves_at_once_and_keeps_its_decision(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        decider = install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        sent = _send(world, ann, bob.handle, 400)
        assert sent.status_code == 201, sent.text
        payment = sent.json()
        assert payment["state"] == "succeeded"
        [stored] = decisions(world, payment["id"])
        assert stored.action == "allow" and stored.kind == "p2p"
        assert payment["risk_decision_id"] == format_id("rdc", stored.id)
        seen = decider.seen[-1]
        assert (seen.payee, seen.reference, seen.amount) == (bob.id, payment["id"], 400)
        assert seen.ip is None  # the test client's peer ("testclient") is no address
        assert world.wallet(bob)["available"] == 400


def test_a_challenged_p2p_needs_a_step_up_for_exactly_that_movement(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        refused = _send(world, ann, bob.handle, CHALLENGE)
        body = problem(refused, 403, "step_up_required")
        assert (body["amount"], body["currency"], body["payee"]) == (str(CHALLENGE), "USD", bob.id)
        assert body["decision_id"].startswith("rdc_")
        [challenged] = decisions(world)[-1:]
        assert (
            challenged.action == "challenge"
            and format_id("rdc", challenged.id) == body["decision_id"]
        )
        assert world.wallet(ann)["available"] == 20_000  # nothing stored, nothing moved
        secret = totp(world, ann)
        other = step_up(world, ann, secret, amount=CHALLENGE - 1, currency="USD", payee=bob.id)
        wrong = _send(world, ann, bob.handle, CHALLENGE, step_up_token=other)
        problem(wrong, 403, "step_up_rejected")
        token = step_up(world, ann, secret, amount=CHALLENGE, currency="USD", payee=bob.id)
        sent = _send(world, ann, bob.handle, CHALLENGE, step_up_token=token)
        assert sent.status_code == 201, sent.text
        assert sent.json()["state"] == "succeeded"
        assert world.wallet(bob)["available"] == CHALLENGE


def test_a_blocked_p2p_moves_nothing_and_fails(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        body = problem(_send(world, ann, bob.handle, BLOCK), 403, "risk_blocked")
        assert set(body) >= {"decision_id"} and "reasons" not in body
        blocked = decisions(world)[-1]
        assert blocked.action == "block" and body["decision_id"] == format_id("rdc", blocked.id)
        assert blocked.reference is not None
        payment = world.payment(blocked.reference)
        assert (payment["state"], payment["failure_code"]) == ("failed", "risk_blocked")
        assert payment["transfers"] == []
        assert world.wallet(ann)["available"] == 20_000
        assert world.wallet(bob)["available"] == 0


def test_a_reviewed_p2p_is_held_then_approved_exactly_once(database_url: str) -> None:
    with World(database_url) as world:  # with fees: they are held and posted too
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        held = _send(world, ann, bob.handle, REVIEW)
        assert held.status_code == 202, held.text
        payment = held.json()
        assert payment["state"] == "in_review"
        opened = case(world, payment["id"])
        assert opened is not None and opened.state == "open" and opened.kind == "p2p"
        assert world.wallet(ann)["available"] == 20_000 - REVIEW - fee_of(REVIEW)
        assert world.wallet(bob) == {"available": 0, "pending": REVIEW, "held": 0}
        resolve(world, payment["id"], approve=True)
        resolve(world, payment["id"], approve=True)  # idempotent
        done = world.payment(payment["id"])
        assert (done["state"], done["captured_amount"]) == ("succeeded", str(REVIEW))
        assert world.wallet(bob)["available"] == REVIEW
        assert world.wallet(ann)["available"] == 20_000 - REVIEW - fee_of(REVIEW)
        assert sum(int(fee["amount"]) for fee in done["fees"]) == fee_of(REVIEW)


def test_a_reviewed_p2p_rejected_gives_the_money_back(database_url: str) -> None:
    with World(database_url) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        payment = _send(world, ann, bob.handle, REVIEW).json()
        resolve(world, payment["id"], approve=False)
        resolve(world, payment["id"], approve=False)
        resolve(world, payment["id"], approve=True)  # too late: rejected stays rejected
        done = world.payment(payment["id"])
        assert (done["state"], done["failure_code"]) == ("failed", "risk_rejected")
        assert world.wallet(ann) == {"available": 20_000, "pending": 0, "held": 0}
        assert world.wallet(bob)["available"] == 0


def test_an_expired_review_voids_the_hold_and_expires_the_case(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        payment = _send(world, ann, bob.handle, REVIEW).json()
        expire(world)
        assert world.payment(payment["id"])["state"] == "in_review"  # not due yet
        lapse(world, payment["id"])
        assert expire(world) >= 1
        done = world.payment(payment["id"])
        assert (done["state"], done["failure_code"]) == ("failed", "risk_review_expired")
        expired = case(world, payment["id"])
        assert expired is not None and expired.state == "expired"
        assert world.wallet(ann)["available"] == 20_000


def test_hold_outgoing_forces_review_of_an_allowed_p2p(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        respond(world, ann, "hold_outgoing")
        held = _send(world, ann, bob.handle, 300)
        assert held.status_code == 202, held.text
        assert held.json()["state"] == "in_review"
        [allowed] = decisions(world, held.json()["id"])
        assert allowed.action == "allow"  # the engine's own action, the response held it
        resolve(world, held.json()["id"], approve=True)
        assert world.wallet(bob)["available"] == 300


def test_a_reviewed_money_request_is_approved_then_held(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        asked = world.client.post(
            "/v1/me/money-requests",
            json={"payer": ann.handle, "amount": REVIEW, "currency": "USD"},
            headers=bob.auth,
        )
        assert asked.status_code == 201, asked.text
        answered = world.client.post(
            f"/v1/me/money-requests/{asked.json()['id']}/approve", headers=ann.auth
        )
        assert answered.status_code == 202, answered.text
        payment_id = answered.json()["payment_id"]
        assert world.payment(payment_id)["state"] == "in_review"
        resolve(world, payment_id, approve=True)
        assert world.wallet(bob)["available"] == REVIEW
        blocked = world.client.post(
            "/v1/me/money-requests",
            json={"payer": ann.handle, "amount": BLOCK, "currency": "USD"},
            headers=bob.auth,
        ).json()
        refused = world.client.post(
            f"/v1/me/money-requests/{blocked['id']}/approve", headers=ann.auth
        )
        problem(refused, 403, "risk_blocked")
        again = world.client.get(f"/v1/me/money-requests/{blocked['id']}", headers=ann.auth)
        assert again.json()["state"] == "pending"  # the payer may try again


def test_with_risk_disabled_nothing_is_decided_or_stored(database_url: str) -> None:
    with World(database_url, fees=False, risk_enabled=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        sent = _send(world, ann, bob.handle, BLOCK)
        assert sent.status_code == 201 and sent.json()["risk_decision_id"] is None
        assert decisions(world) == []


def test_recovery_finishes_movements_whose_case_was_decided(database_url: str) -> None:
    from payments.risk_support import decide_case, resume

    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        approved = _send(world, ann, bob.handle, REVIEW).json()
        rejected = _send(world, ann, bob.handle, REVIEW).json()
        decide_case(world, approved["id"], "approved")
        decide_case(world, rejected["id"], "rejected")
        assert resume(world) >= 2
        assert world.payment(approved["id"])["state"] == "succeeded"
        failed = world.payment(rejected["id"])
        assert (failed["state"], failed["failure_code"]) == ("failed", "risk_rejected")
        resume(world)  # nothing left to do
        assert world.wallet(bob)["available"] == REVIEW
        assert world.wallet(ann)["available"] == 20_000 - REVIEW

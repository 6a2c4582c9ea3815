"""P2P transfers by id, handle and phone; money requests approved, declined, expired."""

from __future__ import annotations

from typing import Any

from payments.payments_support import User, World, fee_of, problem


def _send(world: World, sender: User, recipient: str, amount: int) -> Any:
    body = {"recipient": recipient, "amount": amount, "currency": "USD"}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def test_p2p_by_id_handle_and_phone(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user(phone="+447700900123")
        world.fund(ann, 5_000)
        for recipient in (bob.id, bob.handle, f"@{bob.handle}", "+44 7700 900123"):
            sent = _send(world, ann, recipient, 100)
            assert sent.status_code == 201, sent.text
            assert sent.json()["state"] == "succeeded"
            assert sent.json()["payee"] == bob.id
        assert world.wallet(bob)["available"] == 400
        assert world.wallet(ann)["available"] == 5_000 - 4 * (100 + fee_of(100))
        mine = world.client.get(f"/v1/me/payments/{sent.json()['id']}", headers=bob.auth)
        assert mine.status_code == 200
        world.assert_books()


def test_p2p_refusals_move_nothing(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        problem(_send(world, ann, bob.handle, 1_000), 422, "insufficient_funds")
        problem(_send(world, ann, ann.handle, 10), 422, "self_payment")
        problem(_send(world, ann, "nobody_here", 10), 404, "recipient_not_found")
        problem(_send(world, ann, "usr_" + "0" * 32, 10), 404, "recipient_not_found")
        problem(_send(world, ann, "+12", 10), 404, "recipient_not_found")
        problem(_send(world, ann, "+1", 10), 422, "validation_failed")
        assert world.wallet(ann)["available"] == 1_000
        assert world.wallet(bob)["available"] == 0
        carol = world.user()
        other = world.client.get(f"/v1/me/payments/{world.fund(ann, 1)['id']}", headers=carol.auth)
        problem(other, 404, "payment_not_found")
        world.assert_books()


def _ask(world: World, payee: User, payer: User, amount: int, **fields: Any) -> dict[str, Any]:
    body = {"payer": payer.handle, "amount": amount, "currency": "USD", **fields}
    response = world.client.post("/v1/me/money-requests", json=body, headers=payee.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _answer(world: World, user: User, request_id: str, verb: str) -> Any:
    return world.client.post(f"/v1/me/money-requests/{request_id}/{verb}", headers=user.auth)


def test_an_approved_request_pays_the_payee_once(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 2_000)
        request = _ask(world, bob, ann, 700, note="pizza")
        problem(_answer(world, bob, request["id"], "approve"), 409, "invalid_state_transition")
        approved = _answer(world, ann, request["id"], "approve").json()
        assert approved["state"] == "approved" and approved["payment_id"].startswith("pay_")
        problem(_answer(world, ann, request["id"], "approve"), 409, "invalid_state_transition")
        problem(_answer(world, ann, request["id"], "decline"), 409, "invalid_state_transition")
        assert world.wallet(bob)["available"] == 700
        assert world.wallet(ann)["available"] == 2_000 - 700 - fee_of(700)
        seen = world.client.get(f"/v1/me/money-requests/{request['id']}", headers=bob.auth)
        assert seen.json()["state"] == "approved"
        world.assert_books()


def test_a_declined_request_moves_nothing(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        request = _ask(world, bob, ann, 700)
        assert _answer(world, ann, request["id"], "decline").json()["state"] == "declined"
        problem(_answer(world, ann, request["id"], "approve"), 409, "invalid_state_transition")
        assert world.wallet(bob)["available"] == 0
        world.assert_books()


def test_an_expired_request_cannot_be_approved(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 2_000)
        request = _ask(world, bob, ann, 700, expires_in_s=1)
        from billfold.payments.models import MoneyRequest

        async def expire() -> None:
            async with world.runtime.unit_of_work.begin() as session:
                row = await session.get(MoneyRequest, _uuid(request["id"]))
                assert row is not None
                row.expires_at = 1

        world.client.portal.call(expire)
        problem(_answer(world, ann, request["id"], "approve"), 409, "money_request_expired")
        seen = world.client.get(f"/v1/me/money-requests/{request['id']}", headers=ann.auth)
        assert seen.json()["state"] == "expired"
        assert world.wallet(bob)["available"] == 0
        world.assert_books()


def test_an_unaffordable_approval_leaves_the_request_pending(database_url: str) -> None:
    with World(database_url) as world:
        ann, bob = world.user(), world.user()
        request = _ask(world, bob, ann, 700)
        problem(_answer(world, ann, request["id"], "approve"), 422, "insufficient_funds")
        seen = world.client.get(f"/v1/me/money-requests/{request['id']}", headers=ann.auth)
        assert seen.json()["state"] == "pending"
        world.fund(ann, 1_000)
        assert _answer(world, ann, request["id"], "approve").json()["state"] == "approved"
        world.assert_books()


def _uuid(public_id: str) -> Any:
    import uuid

    return uuid.UUID(hex=public_id.partition("_")[2])

"""Step-up (PSD2 dynamic linking) for P2P transfers and withdrawals above the threshold."""

from __future__ import annotations

from typing import Any

from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from payments.payments_support import User, World, problem


def _totp(world: World, user: User) -> str:
    clock = world.app.state.users_config.clock
    secret: str = world.client.post("/v1/me/mfa/totp", headers=user.auth).json()["secret"]
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    confirm = world.client.post("/v1/me/mfa/totp/confirm", json={"code": code}, headers=user.auth)
    assert confirm.is_success, confirm.text
    clock.advance(seconds=30)
    return secret


def _step_up(world: World, user: User, secret: str, **action: Any) -> str:
    clock = world.app.state.users_config.clock
    challenge = world.client.post(
        "/v1/me/step-up", json={**action, "method": "totp"}, headers=user.auth
    )
    assert challenge.status_code == 201, challenge.text
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    clock.advance(seconds=30)
    answer = world.client.post(
        f"/v1/me/step-up/{challenge.json()['id']}/answer",
        json={"totp_code": code},
        headers=user.auth,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["step_up_token"]
    return token


def test_large_p2p_needs_a_step_up_bound_to_amount_and_payee(database_url: str) -> None:
    with World(database_url, fees=False, payments_step_up_threshold_minor=1_000) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 5_000)
        small = {"recipient": bob.handle, "amount": 1_000, "currency": "USD"}
        assert world.client.post("/v1/me/p2p", json=small, headers=ann.auth).status_code == 201
        large = {**small, "amount": 2_000}
        refused = world.client.post("/v1/me/p2p", json=large, headers=ann.auth)
        body = problem(refused, 403, "step_up_required")
        assert body["payee"] == bob.id and body["amount"] == "2000"
        secret = _totp(world, ann)
        token = _step_up(world, ann, secret, amount=2_000, currency="USD", payee=bob.id)
        wrong = {**large, "amount": 2_001, "step_up_token": token}
        problem(
            world.client.post("/v1/me/p2p", json=wrong, headers=ann.auth), 403, "step_up_rejected"
        )
        token = _step_up(world, ann, secret, amount=2_000, currency="USD", payee=bob.id)
        sent = world.client.post(
            "/v1/me/p2p", json={**large, "step_up_token": token}, headers=ann.auth
        )
        assert sent.status_code == 201, sent.text
        again = world.client.post(
            "/v1/me/p2p", json={**large, "step_up_token": token}, headers=ann.auth
        )
        problem(again, 403, "step_up_rejected")  # single use
        assert world.wallet(bob)["available"] == 3_000
        world.assert_books()


def test_large_withdrawals_need_a_step_up_bound_to_the_destination(database_url: str) -> None:
    with World(database_url, fees=False, payments_step_up_threshold_minor=1_000) as world:
        ann = world.user()
        world.fund(ann, 5_000)
        body = {
            "amount": 2_000,
            "currency": "USD",
            "method": "bank_transfer",
            "destination": "DE89370400440532013000",
        }
        problem(
            world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth),
            403,
            "step_up_required",
        )
        secret = _totp(world, ann)
        token = _step_up(
            world, ann, secret, amount=2_000, currency="USD", payee="iban:DE89370400440532013000"
        )
        done = world.client.post(
            "/v1/me/withdrawals", json={**body, "step_up_token": token}, headers=ann.auth
        )
        assert done.status_code == 201, done.text
        assert world.wallet(ann)["held"] == 2_000
        world.assert_books()

"""Step-up (PSD2 dynamic linking) for P2P transfers and withdrawals above the threshold."""

from __future__ import annotations

from payments.payments_support import World, problem
from payments.risk_support import step_up, totp


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
        secret = totp(world, ann)
        token = step_up(world, ann, secret, amount=2_000, currency="USD", payee=bob.id)
        wrong = {**large, "amount": 2_001, "step_up_token": token}
        problem(
            world.client.post("/v1/me/p2p", json=wrong, headers=ann.auth), 403, "step_up_rejected"
        )
        token = step_up(world, ann, secret, amount=2_000, currency="USD", payee=bob.id)
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
        secret = totp(world, ann)
        token = step_up(
            world, ann, secret, amount=2_000, currency="USD", payee="iban:DE89370400440532013000"
        )
        done = world.client.post(
            "/v1/me/withdrawals", json={**body, "step_up_token": token}, headers=ann.auth
        )
        assert done.status_code == 201, done.text
        assert world.wallet(ann)["held"] == 2_000
        world.assert_books()

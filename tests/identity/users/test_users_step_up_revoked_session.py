"""A step-up token answered in a session that was revoked since (a logout, "sign out
everywhere", a stolen token's family revoked on reuse) is refused when a payment spends it,
even with the access token of another, live session of the same user."""

from __future__ import annotations

from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from identity.users.users_support import PASSWORD
from payments.payments_support import World, problem
from payments.risk_support import step_up, totp


def _second_session(world: World, handle: str, secret: str) -> dict[str, str]:
    """Another session of the same user (password, then TOTP): its access token header."""
    clock = world.app.state.users_config.clock
    login = world.client.post(
        "/v1/sessions",
        json={
            "tenant_id": f"ten_{world.tenant_id.hex}",
            "mode": "test",
            "identifier": handle,
            "password": PASSWORD,
        },
    )
    assert login.status_code == 200 and login.json()["status"] == "mfa_required", login.text
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    clock.advance(seconds=30)
    second = world.client.post(
        "/v1/sessions/mfa",
        json={"mfa_token": login.json()["mfa"]["mfa_token"], "totp_code": code},
    )
    assert second.status_code == 200, second.text
    return {"Authorization": f"Bearer {second.json()['access_token']}"}


def test_a_step_up_token_of_a_logged_out_session_is_refused(database_url: str) -> None:
    with World(database_url, fees=False, payments_step_up_threshold_minor=1_000) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 5_000)
        secret = totp(world, ann)
        token = step_up(world, ann, secret, amount=2_000, currency="USD", payee=bob.id)
        other = _second_session(world, ann.handle, secret)
        logout = world.client.post("/v1/me/logout", headers=ann.auth)
        assert logout.status_code == 200, logout.text
        body = {"recipient": bob.handle, "amount": 2_000, "currency": "USD"}
        refused = world.client.post(
            "/v1/me/p2p", json={**body, "step_up_token": token}, headers=other
        )
        problem(refused, 403, "step_up_rejected")
        assert world.wallet(bob)["available"] == 0
        # A step-up answered in the live session still works.
        fresh = step_up(
            world,
            type(ann)(id=ann.id, token=other["Authorization"].split()[1], handle=ann.handle),
            secret,
            amount=2_000,
            currency="USD",
            payee=bob.id,
        )
        sent = world.client.post("/v1/me/p2p", json={**body, "step_up_token": fresh}, headers=other)
        assert sent.status_code == 201, sent.text
        world.assert_books()

"""Live mode has no sandbox provider unless `BILLFOLD_PAYMENTS_SANDBOX_LIVE` says so: a
sandbox confirms any test card, so a live-mode top-up through it minted live money from
nothing (and a live withdrawal paid out to no one). Test mode is served as before."""

from __future__ import annotations

from httpx import Response

from billfold.identity.types import Mode
from payments.payments_support import TEST_CARD, World, problem

IBAN = "DE89370400440532013000"


def _top_up(world: World, token: str) -> Response:
    body = {"amount": 5_000, "currency": "USD", "method": "card", "instrument": TEST_CARD}
    return world.client.post(
        "/v1/me/top-ups", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_live_mode_refuses_the_sandbox_providers(database_url: str) -> None:
    with World(database_url) as world:
        ann = world.user(mode=Mode.LIVE)
        refused = problem(_top_up(world, ann.token), 422, "live_provider_unavailable")
        assert refused["method"] == "card"
        withdrawal = {
            "amount": 100,
            "currency": "USD",
            "method": "bank_transfer",
            "destination": IBAN,
        }
        problem(
            world.client.post("/v1/me/withdrawals", json=withdrawal, headers=ann.auth),
            422,
            "live_provider_unavailable",
        )
        world.deliver()
        assert world.wallet(ann) == {"available": 0, "pending": 0, "held": 0}
        assert world.sender.take() == []  # no provider was asked
        bob = world.user()  # test mode, as before
        assert _top_up(world, bob.token).status_code == 201


def test_the_sandbox_serves_live_mode_when_allowed(database_url: str) -> None:
    with World(database_url, fees=False, payments_sandbox_live=True) as world:
        ann = world.user(mode=Mode.LIVE)
        created = _top_up(world, ann.token)
        assert created.status_code == 201, created.text
        world.deliver()
        assert world.wallet(ann)["available"] == 5_000

"""A payout being asked for is not an interrupted one. A withdrawal approved from review
long after it was made enters `processing` and asks the provider at once; recovery, which
looks for withdrawals older than a minute left `processing` without a provider reference,
must not take that call in flight for one a crash cut off, void the holds and fail the
withdrawal: the payout is then made anyway, and the money is both paid out and back in
the wallet."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update

from billfold.connectors.types import PayoutRequest, ProviderResponse
from billfold.payments.flows import recovery
from billfold.payments.models import Payment
from billfold.risk.types import Action
from payments.payments_support import World, internal_id
from payments.risk_support import AmountDecider, install, resolve

IBAN = "DE89370400440532013000"
HELD = 9_100
HOUR_NS = 3_600 * 1_000_000_000


def _age(world: World, payment_id: str) -> None:
    """The withdrawal was made an hour ago (it waited that long for an analyst)."""

    async def write() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == internal_id(payment_id))
                .values(created_at=time.time_ns() - HOUR_NS)
            )

    world.client.portal.call(write)


def test_recovery_leaves_an_approved_withdrawals_payout_in_flight_alone(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        install(world, AmountDecider({HELD: Action.REVIEW}))
        ann = world.user()
        world.fund(ann, 40_000)
        body = {"amount": HELD, "currency": "USD", "method": "bank_transfer", "destination": IBAN}
        held = world.client.post("/v1/me/withdrawals", json=body, headers=ann.auth).json()
        assert held["state"] == "in_review"
        _age(world, held["id"])
        sandbox: Any = world.runtime.sandboxes["sandbox_bank"]
        payout = sandbox.payout
        sweeps: list[int] = []

        async def payout_while_recovery_runs(request: PayoutRequest) -> ProviderResponse:
            """The worker's recovery round comes while the provider is being asked."""
            await recovery.resume_interrupted(world.runtime, older_than_s=60)
            sweeps.append(1)
            response: ProviderResponse = await payout(request)
            return response

        sandbox.payout = payout_while_recovery_runs
        resolve(world, held["id"], approve=True)
        assert sweeps == [1]
        world.deliver()  # the provider paid it out

        done = world.payment(held["id"])
        assert done["state"] == "succeeded", done
        assert world.wallet(ann) == {"available": 40_000 - HELD, "pending": 0, "held": 0}
        assert world.system("clearing:sandbox_bank")["credits_posted"] == HELD

"""The application's own risk engine, end to end: real features, rules in the tables, the
review queue moving the held money through payments, and automated responses — with no
test decider in between."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from billfold.identity.operators.permissions import Role
from billfold.risk.cases.models import RiskResponseEnforcement
from billfold.risk.models import RiskDecision, RiskResponse
from billfold.risk.types import Action, Response
from identity.operators.operators_support import operator
from payments.payments_support import World, problem
from payments.risk_support import in_db
from risk.risk_support import add_active_rule


def _rule(world: World, expression: str, action: Action, **fields: Any) -> None:
    async def add(session: Any) -> None:
        await add_active_rule(
            session, tenant_id=world.tenant_id, expression=expression, action=action, **fields
        )

    in_db(world, add)
    world.app.state.risk.forget(world.tenant_id, "test")  # no wait for the version check


def _send(world: World, sender: Any, recipient: Any, amount: int) -> Any:
    body = {"recipient": recipient.handle, "amount": amount, "currency": "USD"}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def _decisions(world: World) -> list[RiskDecision]:
    async def read(session: Any) -> list[RiskDecision]:
        rows = await session.execute(
            select(RiskDecision)
            .where(RiskDecision.tenant_id == world.tenant_id, RiskDecision.kind == "p2p")
            .order_by(RiskDecision.created_at)
        )
        return list(rows.scalars())

    return in_db(world, read)


def test_a_new_payee_is_held_for_review_and_an_analyst_approval_pays_it(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        _rule(world, 'kind == "p2p" && new_payee && amount_major >= 50.0', Action.REVIEW, score=300)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        held = _send(world, ann, bob, 6_000)
        assert held.status_code == 202, held.text
        assert held.json()["state"] == "in_review"
        assert world.wallet(bob)["available"] == 0
        analyst = operator(database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        queue = world.client.get("/v1/risk/cases?mode=test&state=open", headers=analyst.headers)
        [case] = queue.json()["items"]
        assert case["reference"] == held.json()["id"]
        approved = world.client.post(
            f"/v1/risk/cases/{case['id']}/approve", json={}, headers=analyst.headers
        )
        assert approved.status_code == 200, approved.text
        assert world.payment(held.json()["id"])["state"] == "succeeded"
        assert world.wallet(bob)["available"] == 6_000
        again = _send(world, ann, bob, 6_000)  # bob is no longer a new payee
        assert again.status_code == 201, again.text
        first, second = _decisions(world)
        features = [json.loads(d.features) for d in (first, second)]
        assert [f["new_payee"] for f in features] == [True, False]
        assert [d.action for d in (first, second)] == ["review", "allow"]
        assert world.wallet(bob)["available"] == 12_000


def test_a_rejected_case_returns_the_held_money(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        _rule(world, 'kind == "p2p" && amount_major >= 100.0', Action.REVIEW)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        held = _send(world, ann, bob, 15_000)
        assert held.status_code == 202, held.text
        assert world.wallet(ann)["available"] == 5_000  # the hold
        analyst = operator(database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        [case] = world.client.get("/v1/risk/cases?mode=test", headers=analyst.headers).json()[
            "items"
        ]
        rejected = world.client.post(
            f"/v1/risk/cases/{case['id']}/reject", json={}, headers=analyst.headers
        )
        assert rejected.status_code == 200, rejected.text
        payment = world.payment(held.json()["id"])
        assert (payment["state"], payment["failure_code"]) == ("failed", "risk_rejected")
        assert world.wallet(ann)["available"] == 20_000
        assert world.wallet(bob)["available"] == 0


def test_a_shadow_rule_is_stored_but_never_changes_the_outcome(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 5_000)
        _rule(world, "amount > 0", Action.BLOCK, shadow=True, score=900)
        sent = _send(world, ann, bob, 1_000)
        assert sent.status_code == 201, sent.text
        [decision] = _decisions(world)
        assert decision.action == "allow" and decision.score == 0
        [hit] = json.loads(decision.hits)
        assert hit["shadow"] is True and hit["action"] == "block"


def test_velocity_challenges_then_a_blocking_rule_freezes_the_user(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        _rule(world, 'kind == "p2p" && user_count_1h >= 3', Action.CHALLENGE, score=200)
        _rule(
            world,
            'kind == "p2p" && amount_major >= 150.0',
            Action.BLOCK,
            score=800,
            responses=(Response.FREEZE_ACCOUNT,),
        )
        ann, bob = world.user(), world.user()
        world.fund(ann, 50_000)
        assert _send(world, ann, bob, 100).status_code == 201
        assert _send(world, ann, bob, 100).status_code == 201
        challenged = problem(_send(world, ann, bob, 100), 403, "step_up_required")
        assert challenged["decision_id"].startswith("rdc_")
        blocked = problem(_send(world, ann, bob, 20_000), 403, "risk_blocked")
        assert "amount_major" not in str(blocked)  # the caller never sees the rules

        async def responses(session: Any) -> list[tuple[str, str]]:
            rows = await session.execute(
                select(RiskResponse.kind, RiskResponse.state).where(
                    RiskResponse.tenant_id == world.tenant_id
                )
            )
            return [(kind, state) for kind, state in rows]

        assert in_db(world, responses) == [("freeze_account", "active")]
        # Frozen: even a small payment is refused now.
        problem(_send(world, ann, bob, 10), 403, "risk_blocked")
        # And her ledger accounts froze as the decision committed (no recovery sweep runs
        # here): money sent to her is refused too.
        assert _enforcement_states(world) == ["done"]
        incoming = _send(world, bob, ann, 50)
        assert incoming.status_code >= 400, incoming.text
        assert world.wallet(bob)["available"] == 200
        assert world.wallet(ann)["available"] == 50_000 - 200


def _enforcement_states(world: World) -> list[str]:
    """The tenant's freeze enforcements' states, once none is pending (at most 10 s)."""

    async def read(session: Any) -> list[str]:
        rows = await session.execute(
            select(RiskResponseEnforcement.state).where(
                RiskResponseEnforcement.tenant_id == world.tenant_id
            )
        )
        return list(rows.scalars())

    deadline = time.monotonic() + 10.0
    states = in_db(world, read)
    while "pending" in states and time.monotonic() < deadline:
        time.sleep(0.05)
        states = in_db(world, read)
    return states

"""The decision engine: each action, shadow against enforcing, a satisfied challenge, model
thresholds, the stored decision, evaluation errors, and the compiled-rules cache."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from structlog.testing import capture_logs

from billfold.kit.clock import ManualClock
from billfold.kit.db import UnitOfWork
from billfold.risk.models import RiskDecision
from billfold.risk.service import STEP_UP_SATISFIED, ModelOutcome, RiskEngine, combine
from billfold.risk.types import Action, Decision, Response, RuleHit, ScorerSet
from risk.risk_support import (
    FakeRegistry,
    FixedFeatures,
    FixedScorer,
    add_active_rule,
    movement,
    run,
)


def _decide(
    database_url: str,
    rules: list[dict[str, object]],
    *,
    engine: RiskEngine | None = None,
    step_up_verified: bool = False,
    amount: int = 12_500,
) -> tuple[Decision, RiskDecision]:
    """Write the rules for a new tenant, decide one movement, read back the stored row."""
    tenant_id = uuid.uuid4()
    engine = engine or RiskEngine(FixedFeatures())

    async def go(unit_of_work: UnitOfWork) -> tuple[Decision, RiskDecision]:
        async with unit_of_work.begin() as session:
            for rule in rules:
                await add_active_rule(session, tenant_id=tenant_id, **rule)  # type: ignore[arg-type]
        async with unit_of_work.begin() as session:
            decision = await engine.decide(
                session, movement(tenant_id, amount=amount, step_up_verified=step_up_verified)
            )
        async with unit_of_work.begin() as session:
            row = (
                await session.execute(select(RiskDecision).where(RiskDecision.id == decision.id))
            ).scalar_one()
        return decision, row

    return run(database_url, go)


@pytest.mark.parametrize("action", list(Action))
def test_an_enforcing_hit_applies_its_action(database_url: str, action: Action) -> None:
    decision, row = _decide(
        database_url, [{"expression": "amount_major > 100.0", "action": action, "score": 250}]
    )
    assert decision.action is action
    assert row.action == action.value
    assert decision.score == 250
    assert decision.reasons == (f"{action.value}: amount_major > 100.0",)


def test_no_hit_allows_with_score_zero(database_url: str) -> None:
    decision, row = _decide(
        database_url, [{"expression": "amount_major > 1000000.0", "action": Action.BLOCK}]
    )
    assert (decision.action, decision.score, decision.reasons, decision.hits) == (
        Action.ALLOW,
        0,
        (),
        (),
    )
    assert row.ruleset_version == 1


def test_the_strongest_action_wins_and_scores_add_up_to_the_cap(database_url: str) -> None:
    decision, _ = _decide(
        database_url,
        [
            {"expression": "true", "action": Action.CHALLENGE, "score": 400},
            {"expression": "new_payee", "action": Action.REVIEW, "score": 500},
            {"expression": "amount > 1", "action": Action.ALLOW, "score": 300},
        ],
    )
    assert decision.action is Action.REVIEW
    assert decision.score == 1000
    assert len(decision.reasons) == 3


def test_a_shadow_hit_is_stored_but_never_enforced(database_url: str) -> None:
    decision, row = _decide(
        database_url,
        [
            {"expression": "true", "action": Action.BLOCK, "score": 900, "shadow": True},
            {"expression": "true", "action": Action.CHALLENGE, "score": 10},
        ],
    )
    assert decision.action is Action.CHALLENGE
    assert decision.score == 10
    assert [(hit.action, hit.shadow) for hit in decision.hits] == [
        (Action.BLOCK, True),
        (Action.CHALLENGE, False),
    ] or [(hit.action, hit.shadow) for hit in decision.hits] == [
        (Action.CHALLENGE, False),
        (Action.BLOCK, True),
    ]
    stored = json.loads(row.hits)
    assert sorted((hit["action"], hit["shadow"]) for hit in stored) == [
        ("block", True),
        ("challenge", False),
    ]
    assert all(hit["rule_id"].startswith("rrl_") for hit in stored)


def test_a_verified_step_up_satisfies_a_challenge(database_url: str) -> None:
    rules: list[dict[str, object]] = [{"expression": "true", "action": Action.CHALLENGE}]
    challenged, _ = _decide(database_url, rules)
    satisfied, row = _decide(database_url, rules, step_up_verified=True)
    assert challenged.action is Action.CHALLENGE
    assert satisfied.action is Action.ALLOW
    assert satisfied.extra == {"challenge_satisfied": True}
    assert STEP_UP_SATISFIED in json.loads(row.reasons)


def test_a_verified_step_up_does_not_lift_a_review(database_url: str) -> None:
    decision, _ = _decide(
        database_url,
        [
            {"expression": "true", "action": Action.CHALLENGE},
            {"expression": "true", "action": Action.REVIEW},
        ],
        step_up_verified=True,
    )
    assert decision.action is Action.REVIEW


def test_a_failing_rule_is_no_hit_and_is_logged_with_its_id(database_url: str) -> None:
    engine = RiskEngine(FixedFeatures({"ip_country": None}))
    with capture_logs() as logs:
        decision, _ = _decide(
            database_url,
            [
                {"expression": "ip_country > 'A'", "action": Action.BLOCK},
                {"expression": "amount + 0.5 > 1.0", "action": Action.BLOCK},
            ],
            engine=engine,
        )
    assert decision.action is Action.ALLOW and decision.hits == ()
    failed = [entry for entry in logs if entry["event"] == "risk.rule_failed"]
    assert len(failed) == 2 and all(entry["rule_id"].startswith("rrl_") for entry in failed)


def test_the_stored_decision_holds_the_features_and_the_movement(database_url: str) -> None:
    source = FixedFeatures({"new_device": True})
    decision, row = _decide(
        database_url,
        [{"expression": "new_device", "action": Action.REVIEW, "score": 300}],
        engine=RiskEngine(source),
        amount=99_900,
    )
    features = json.loads(row.features)
    assert features["new_device"] is True and features["amount"] == 99_900
    assert features == json.loads(json.dumps(dict(decision.features)))
    assert (row.kind, row.amount, row.currency, row.score) == ("p2p", 99_900, "USD", 300)
    assert row.reference is not None and row.reference.startswith("pay_")
    assert len(source.recorded) == 1, "the movement is counted after the decision"


def test_the_responses_of_enforcing_hits_ride_with_the_decision(database_url: str) -> None:
    decision, _ = _decide(
        database_url,
        [
            {
                "expression": "true",
                "action": Action.BLOCK,
                "responses": (Response.FREEZE_ACCOUNT,),
            },
            {
                "expression": "true",
                "action": Action.REVIEW,
                "responses": (Response.HOLD_OUTGOING,),
                "shadow": True,
            },
        ],
    )
    assert decision.responses == (Response.FREEZE_ACCOUNT,)


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.5, Action.ALLOW), (0.8, Action.REVIEW), (0.9, Action.REVIEW), (0.97, Action.BLOCK)],
)
def test_the_enforcing_model_acts_by_threshold(
    database_url: str, score: float, expected: Action
) -> None:
    registry = FakeRegistry(scorers=ScorerSet(enforcing=FixedScorer(score)))
    engine = RiskEngine(
        FixedFeatures(), registry=registry, model_review_score=0.8, model_block_score=0.95
    )
    decision, row = _decide(
        database_url,
        [{"expression": "true", "action": Action.CHALLENGE, "score": 100}],
        engine=engine,
    )
    assert decision.action is expected.strongest(Action.CHALLENGE)
    assert decision.model_score == pytest.approx(score)
    assert row.model_score == pytest.approx(score)
    acted = expected is not Action.ALLOW
    assert decision.score == min(1000, 100 + (round(score * 1000) if acted else 0))
    assert any(reason.startswith("Model fixed") for reason in decision.reasons) is acted
    assert registry.observed == [("fixed", score)]


def test_a_shadow_model_is_only_scored(database_url: str) -> None:
    registry = FakeRegistry(scorers=ScorerSet(shadow=(FixedScorer(0.99, name="shadow-model"),)))
    decision, _ = _decide(database_url, [], engine=RiskEngine(FixedFeatures(), registry=registry))
    assert decision.action is Action.ALLOW and decision.model_score is None
    assert registry.observed == [("shadow-model", 0.99)]


def test_a_rule_change_is_seen_by_the_next_decision(database_url: str) -> None:
    tenant_id = uuid.uuid4()
    engine = RiskEngine(FixedFeatures())

    async def go(unit_of_work: UnitOfWork) -> list[Action]:
        actions = []
        for expression in (None, "true"):
            if expression is not None:
                async with unit_of_work.begin() as session:
                    await add_active_rule(
                        session, tenant_id=tenant_id, expression=expression, action=Action.BLOCK
                    )
            for _ in range(2):  # the second decision uses the cached rules
                async with unit_of_work.begin() as session:
                    actions.append((await engine.decide(session, movement(tenant_id))).action)
        return actions

    assert run(database_url, go) == [Action.ALLOW, Action.ALLOW, Action.BLOCK, Action.BLOCK]


_HITS = st.builds(
    RuleHit,
    rule_id=st.uuids(),
    rule_version=st.integers(1, 5),
    name=st.text(min_size=1, max_size=5),
    action=st.sampled_from(Action),
    score=st.integers(0, 1000),
    reason=st.text(max_size=10),
    shadow=st.booleans(),
    responses=st.lists(st.sampled_from(Response), max_size=2, unique=True).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(
    hits=st.lists(_HITS, max_size=8),
    model_score=st.none() | st.floats(0, 1),
    step_up=st.booleans(),
)
def test_shadow_hits_never_change_the_outcome(
    hits: list[RuleHit], model_score: float | None, step_up: bool
) -> None:
    model = ModelOutcome(
        score=model_score,
        action=Action.REVIEW if model_score is not None and model_score > 0.5 else Action.ALLOW,
        reason="model" if model_score is not None and model_score > 0.5 else None,
    )

    def decided(with_hits: list[RuleHit]) -> Decision:
        return combine(
            decision_id=uuid.UUID(int=1),
            hits=with_hits,
            model=model,
            features={},
            ruleset_version=1,
            step_up_verified=step_up,
        )

    every = decided(hits)
    enforcing_only = decided([hit for hit in hits if not hit.shadow])
    assert (every.action, every.score, every.reasons, every.responses) == (
        enforcing_only.action,
        enforcing_only.score,
        enforcing_only.reasons,
        enforcing_only.responses,
    )
    assert every.hits == tuple(hits)
    assert 0 <= every.score <= 1000


def test_with_a_check_interval_a_change_is_seen_once_it_passes(database_url: str) -> None:
    tenant_id = uuid.uuid4()
    clock = ManualClock()
    engine = RiskEngine(FixedFeatures(), clock=clock, ruleset_check_interval_s=1.0)

    async def decide(unit_of_work: UnitOfWork) -> Action:
        async with unit_of_work.begin() as session:
            return (await engine.decide(session, movement(tenant_id))).action

    async def go(unit_of_work: UnitOfWork) -> list[Action]:
        actions = [await decide(unit_of_work)]
        async with unit_of_work.begin() as session:
            await add_active_rule(
                session, tenant_id=tenant_id, expression="true", action=Action.BLOCK
            )
        actions.append(await decide(unit_of_work))  # within the interval: cached rules
        clock.advance(seconds=1)
        actions.append(await decide(unit_of_work))
        engine.forget(tenant_id, "test")
        actions.append(await decide(unit_of_work))
        return actions

    assert run(database_url, go) == [Action.ALLOW, Action.ALLOW, Action.BLOCK, Action.BLOCK]

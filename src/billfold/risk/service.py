"""The decision engine: features, CEL rules and models combined into one `Decision`, stored
with what it saw. `RiskEngine` implements `RiskDecider`; payment flows hold it by that
protocol (the application puts one on ``app.state.risk``).

Per decision, in the movement's own transaction:

1. the features (``FeatureSource.compute``); each rule is given the ones it uses (None
   where absent: converting only those for CEL keeps an evaluation at a few µs);
2. the tenant's active rules (shadow and enforcing). Compiled rules are cached in memory
   per (tenant, mode), keyed by the tenant's **ruleset version**: a decision reads the
   current version (one primary-key query) and recompiles only when it changed. With
   ``ruleset_check_interval_s`` 0 (the constructor's default) every decision reads it, so a
   change made by any process applies to the next decision; with a positive interval
   (``BILLFOLD_RISK_RULESET_CHECK_INTERVAL_S``, what the application uses) the version is
   read at most that often per tenant, saving the query on the hot path, and a change is
   seen within the interval (at once in the process whose rules API made it:
   :meth:`RiskEngine.forget`);
3. each rule evaluated; an evaluation error is no hit (logged with the rule id);
4. the tenant's enforcing model, if any, may raise the action to ``review`` or ``block``
   by threshold; shadow models are only scored. Every score is reported to the registry
   (``observe``) for drift detection;
5. combined: the strongest action of the enforcing hits and the model; the score is the
   enforcing hits' scores plus the model's (times 1000, when it acted), capped at 1000. A
   ``challenge`` is satisfied (``allow``) when the movement carries a verified step-up;
6. stored (``risk_decisions``, compact JSON), then the movement is counted
   (``FeatureSource.record``).

Shadow rules and shadow models never change the action (a property test says so).
"""

from __future__ import annotations

import json
import math
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import cel
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.clock import Clock, SystemClock
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import Page, clamp_page_size, decode_id_cursor, encode_cursor
from billfold.risk.changes import RULE_ID_PREFIX
from billfold.risk.errors import DecisionNotFound
from billfold.risk.models import RiskDecision, RiskRuleVersion
from billfold.risk.repository import DecisionRepository, RuleRepository, RulesetRepository
from billfold.risk.rules import CompiledRule, RuleEvaluationError
from billfold.risk.types import (
    Action,
    Decision,
    FeatureSource,
    FeatureValue,
    Movement,
    Response,
    RuleHit,
    Scorer,
    ScorerRegistry,
    ScorerSet,
)

__all__ = [
    "DECISION_ID_PREFIX",
    "MODEL_BLOCK_SCORE_DEFAULT",
    "MODEL_REVIEW_SCORE_DEFAULT",
    "SCORE_MAX",
    "ModelOutcome",
    "RiskEngine",
    "combine",
    "compile_rules",
    "evaluate_rules",
    "get_decision",
    "hit_json",
    "list_decisions",
]

DECISION_ID_PREFIX = "rdc"
SCORE_MAX: Final = 1000
MODEL_REVIEW_SCORE_DEFAULT: Final = 0.8
MODEL_BLOCK_SCORE_DEFAULT: Final = 0.95
TENANTS_CACHED_MAX: Final = 10_000
"""Compiled rule sets kept in memory (least recently used out)."""
PAYEE_LENGTH_MAX = 80
STEP_UP_SATISFIED = "Step-up authentication verified for this movement: challenge satisfied."

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Ruleset:
    version: int
    rules: tuple[CompiledRule, ...]
    checked_at_ns: int
    """When the version was last read from the database."""


@dataclass(frozen=True, slots=True)
class ModelOutcome:
    """What the enforcing model said: its score, and the action and reason when it acted."""

    score: float | None
    action: Action
    reason: str | None


class RiskEngine:
    """Decides every money movement (see the module doc). One per process; safe to share
    between concurrent requests (the cache is replaced, never mutated in place)."""

    def __init__(
        self,
        source: FeatureSource,
        *,
        registry: ScorerRegistry | None = None,
        model_review_score: float = MODEL_REVIEW_SCORE_DEFAULT,
        model_block_score: float = MODEL_BLOCK_SCORE_DEFAULT,
        clock: Clock | None = None,
        tenants_cached_max: int = TENANTS_CACHED_MAX,
        ruleset_check_interval_s: float = 0.0,
    ) -> None:
        invariant(0.0 <= model_review_score <= model_block_score <= 1.0, "thresholds in order")
        invariant(tenants_cached_max >= 1, "the cache holds at least one tenant")
        invariant(0.0 <= ruleset_check_interval_s <= 3600.0, "the check interval is bounded")
        self._check_interval_ns = int(ruleset_check_interval_s * 1_000_000_000)
        self.source = source
        self.registry = registry
        self.model_review_score = model_review_score
        self.model_block_score = model_block_score
        self._clock: Clock = clock or SystemClock()
        self._cache: OrderedDict[tuple[uuid.UUID, str], _Ruleset] = OrderedDict()
        self._cached_max = tenants_cached_max

    async def decide(self, session: AsyncSession, movement: Movement) -> Decision:
        features = await self.source.compute(session, movement)
        ruleset = await self._ruleset(session, movement.tenant_id, movement.mode)
        hits = _evaluate(ruleset.rules, features)
        model = self._score(movement, features)
        decision = combine(
            decision_id=new_id(),
            hits=hits,
            model=model,
            features=features,
            ruleset_version=ruleset.version,
            step_up_verified=movement.step_up_verified,
        )
        session.add(_row(decision, movement, created_at=self._clock.now_ns()))
        await self.source.record(session, movement)
        if decision.action is not Action.ALLOW:
            log.info(
                "risk.decision",
                decision_id=format_id(DECISION_ID_PREFIX, decision.id),
                action=decision.action.value,
                score=decision.score,
                kind=movement.kind.value,
                rules=[hit.name for hit in decision.hits if not hit.shadow],
                model_score=decision.model_score,
            )
        return decision

    def forget(self, tenant_id: uuid.UUID, mode: str) -> None:
        """Drop the tenant's compiled rules (the next decision recompiles them)."""
        self._cache.pop((tenant_id, mode), None)

    async def _ruleset(self, session: AsyncSession, tenant_id: uuid.UUID, mode: str) -> _Ruleset:
        key = (tenant_id, mode)
        cached = self._cache.get(key)
        now_ns = self._clock.now_ns()
        if cached is not None and now_ns - cached.checked_at_ns < self._check_interval_ns:
            return cached  # checked recently enough
        rulesets = RulesetRepository(session)
        version = await rulesets.current(tenant_id=tenant_id, mode=mode)
        if cached is not None and cached.version == version:
            fresh = _Ruleset(version=version, rules=cached.rules, checked_at_ns=now_ns)
            self._cache[key] = fresh
            self._cache.move_to_end(key)
            return fresh
        rows = await RuleRepository(session).active(tenant_id=tenant_id, mode=mode)
        loaded = _Ruleset(version=version, rules=compile_rules(rows), checked_at_ns=now_ns)
        # Under READ COMMITTED a change may commit between the two reads: cache only rules
        # known to belong to `version`.
        if await rulesets.current(tenant_id=tenant_id, mode=mode) == version:
            self._cache[key] = loaded
            self._cache.move_to_end(key)
            while len(self._cache) > self._cached_max:
                self._cache.popitem(last=False)
        return loaded

    def _score(self, movement: Movement, features: Mapping[str, FeatureValue]) -> ModelOutcome:
        if self.registry is None:
            return ModelOutcome(score=None, action=Action.ALLOW, reason=None)
        scorers = self.registry.scorers_for(movement.tenant_id, movement.mode)
        for shadow in scorers.shadow:
            self._observed(movement, shadow, features)
        return self._enforcing(movement, scorers, features)

    def _enforcing(
        self, movement: Movement, scorers: ScorerSet, features: Mapping[str, FeatureValue]
    ) -> ModelOutcome:
        scorer = scorers.enforcing
        score = None if scorer is None else self._observed(movement, scorer, features)
        if scorer is None or score is None:
            return ModelOutcome(score=None, action=Action.ALLOW, reason=None)
        if score >= self.model_block_score:
            action, threshold = Action.BLOCK, self.model_block_score
        elif score >= self.model_review_score:
            action, threshold = Action.REVIEW, self.model_review_score
        else:
            return ModelOutcome(score=score, action=Action.ALLOW, reason=None)
        reason = f"Model {scorer.name} v{scorer.version} scored {score:.3f} (>= {threshold:g})."
        return ModelOutcome(score=score, action=action, reason=reason)

    def _observed(
        self, movement: Movement, scorer: Scorer, features: Mapping[str, FeatureValue]
    ) -> float | None:
        """The scorer's score in [0, 1], reported to the registry; None when it failed."""
        try:
            score = float(scorer.score(features))
        except Exception:  # a model's bug must not stop payments: no score, logged
            log.exception("risk.model_failed", model=scorer.name, version=scorer.version)
            return None
        if math.isnan(score):
            log.warning("risk.model_nan", model=scorer.name, version=scorer.version)
            return None
        score = min(1.0, max(0.0, score))
        assert self.registry is not None  # only called with a registry
        self.registry.observe(movement.tenant_id, movement.mode, scorer, features, score)
        return score


def compile_rules(rows: Sequence[tuple[RiskRuleVersion, str]]) -> tuple[CompiledRule, ...]:
    """Active rule versions (with their rules' names) compiled; a version that no longer
    compiles (it was valid when saved) is left out and logged."""
    compiled: list[CompiledRule] = []
    for version, name in rows:
        try:
            program = cel.compile(version.expression)
        except Exception:
            rule_id = format_id(RULE_ID_PREFIX, version.rule_id)
            log.warning("risk.rule_uncompilable", rule_id=rule_id, version=version.version)
            continue
        compiled.append(
            CompiledRule(
                rule_id=version.rule_id,
                version=version.version,
                name=name,
                action=Action(version.action),
                score=version.score,
                reason=version.reason,
                shadow=version.enforcement == "shadow",
                responses=tuple(Response(value) for value in json.loads(version.responses)),
                program=program,
                variables=tuple(program.variables()),
            )
        )
    return tuple(compiled)


def evaluate_rules(
    rules: Sequence[CompiledRule], features: Mapping[str, FeatureValue]
) -> tuple[RuleHit, ...]:
    """The hits of ``rules`` on ``features`` (a name a rule uses but absent is null)."""
    return _evaluate(rules, features)


def _evaluate(
    rules: Sequence[CompiledRule], features: Mapping[str, FeatureValue]
) -> tuple[RuleHit, ...]:
    hits: list[RuleHit] = []
    for rule in rules:
        try:
            held = rule.holds(features)
        except RuleEvaluationError as error:
            log.warning(
                "risk.rule_failed",
                rule_id=format_id(RULE_ID_PREFIX, rule.rule_id),
                version=rule.version,
                error=str(error),
            )
            continue
        if held:
            hits.append(
                RuleHit(
                    rule_id=rule.rule_id,
                    rule_version=rule.version,
                    name=rule.name,
                    action=rule.action,
                    score=rule.score,
                    reason=rule.reason,
                    shadow=rule.shadow,
                    responses=rule.responses,
                )
            )
    return tuple(hits)


def combine(
    *,
    decision_id: uuid.UUID,
    hits: Sequence[RuleHit],
    model: ModelOutcome,
    features: Mapping[str, FeatureValue],
    ruleset_version: int | None,
    step_up_verified: bool,
) -> Decision:
    """The decision from the hits and the model (pure: the property tests call it)."""
    action = Action.ALLOW
    score = 0
    reasons: list[str] = []
    responses: list[Response] = []
    for hit in hits:
        if hit.shadow:
            continue
        action = action.strongest(hit.action)
        score += hit.score
        reasons.append(hit.reason)
        responses.extend(r for r in hit.responses if r not in responses)
    if model.reason is not None and model.score is not None:
        action = action.strongest(model.action)
        score += round(model.score * SCORE_MAX)
        reasons.append(model.reason)
    extra: dict[str, object] = {}
    if action is Action.CHALLENGE and step_up_verified:
        action = Action.ALLOW
        reasons.append(STEP_UP_SATISFIED)
        extra["challenge_satisfied"] = True
    return Decision(
        id=decision_id,
        action=action,
        score=min(SCORE_MAX, score),
        reasons=tuple(reasons),
        features=dict(features),
        hits=tuple(hits),
        model_score=model.score,
        ruleset_version=ruleset_version,
        responses=tuple(responses),
        extra=extra,
    )


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def hit_json(hit: RuleHit) -> dict[str, object]:
    return {
        "rule_id": format_id(RULE_ID_PREFIX, hit.rule_id),
        "version": hit.rule_version,
        "name": hit.name,
        "action": hit.action.value,
        "score": hit.score,
        "reason": hit.reason,
        "shadow": hit.shadow,
        "responses": [response.value for response in hit.responses],
    }


def _row(decision: Decision, movement: Movement, *, created_at: int) -> RiskDecision:
    payee = movement.payee[:PAYEE_LENGTH_MAX] if movement.payee is not None else None
    return RiskDecision(
        id=decision.id,
        tenant_id=movement.tenant_id,
        mode=movement.mode,
        kind=movement.kind.value,
        reference=movement.reference,
        user_id=movement.user_id,
        payee=payee,
        merchant_id=movement.merchant_id,
        device_id=movement.device_id,
        amount=movement.amount,
        currency=movement.currency,
        action=decision.action.value,
        score=decision.score,
        reasons=_compact(list(decision.reasons)),
        features=_compact(dict(decision.features)),
        hits=_compact([hit_json(hit) for hit in decision.hits]),
        model_score=decision.model_score,
        ruleset_version=decision.ruleset_version,
        created_at=created_at,
    )


async def get_decision(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, decision_id: uuid.UUID
) -> RiskDecision:
    """The tenant's decision in ``mode`` (another tenant's or mode's is not found)."""
    row = await DecisionRepository(session).get(
        tenant_id=tenant_id, mode=mode, decision_id=decision_id
    )
    if row is None:
        raise DecisionNotFound()
    return row


async def list_decisions(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    user_id: uuid.UUID | None,
    action: Action | None,
    kind: str | None,
    since_ns: int | None,
    cursor: str | None,
    limit: int | None,
) -> Page[RiskDecision]:
    """The tenant's decisions, newest first, filtered, one bounded page at a time."""
    page_size = clamp_page_size(limit)
    rows = await DecisionRepository(session).list_for_tenant(
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        action=None if action is None else action.value,
        kind=kind,
        since_ns=since_ns,
        before_id=None if cursor is None else decode_id_cursor(cursor),
        limit=page_size + 1,
    )
    items = list(rows[:page_size])
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)

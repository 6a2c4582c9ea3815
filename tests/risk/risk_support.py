"""Helpers for the risk engine's tests: a deterministic feature source, fake models and
registry implementing the protocols, active rules written straight to the tables, and an
engine run in one unit of work."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id
from billfold.risk.models import RiskRule, RiskRuleVersion
from billfold.risk.repository import RulesetRepository
from billfold.risk.rules import FALLBACK_FEATURE_NAMES, FALLBACK_FEATURE_SAMPLE
from billfold.risk.types import (
    Action,
    Features,
    FeatureValue,
    Movement,
    MovementKind,
    Response,
    Scorer,
    ScorerSet,
)

T = TypeVar("T")


class FixedFeatures:
    """A `FeatureSource`: the sample features, with the movement's amount and any
    overrides; counts every recorded movement."""

    def __init__(self, overrides: Mapping[str, FeatureValue] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.recorded: list[Movement] = []

    @property
    def names(self) -> frozenset[str]:
        return FALLBACK_FEATURE_NAMES

    async def compute(self, session: AsyncSession, movement: Movement) -> dict[str, FeatureValue]:
        features = dict(FALLBACK_FEATURE_SAMPLE)
        features.update(
            amount=movement.amount,
            amount_major=movement.amount / 100,
            kind=movement.kind.value,
            currency=movement.currency,
            user_count_24h=len(self.recorded),
        )
        features.update(self.overrides)
        return features

    async def record(self, session: AsyncSession, movement: Movement) -> None:
        self.recorded.append(movement)


@dataclass
class FixedScorer:
    """A `Scorer` answering one score."""

    fixed: float
    name: str = "fixed"
    version: int = 1

    def score(self, features: Features) -> float:
        return self.fixed


@dataclass
class FakeRegistry:
    """A `ScorerRegistry` holding one `ScorerSet` for every tenant; remembers each score."""

    scorers: ScorerSet = field(default_factory=ScorerSet)
    observed: list[tuple[str, float]] = field(default_factory=list)

    def scorers_for(self, tenant_id: uuid.UUID, mode: str) -> ScorerSet:
        return self.scorers

    def observe(
        self, tenant_id: uuid.UUID, mode: str, scorer: Scorer, features: Features, score: float
    ) -> None:
        self.observed.append((scorer.name, score))


def movement(
    tenant_id: uuid.UUID, *, amount: int = 12_500, step_up_verified: bool = False
) -> Movement:
    return Movement(
        tenant_id=tenant_id,
        mode="test",
        kind=MovementKind.P2P,
        amount=amount,
        currency="USD",
        occurred_at_ns=time.time_ns(),
        user_id=uuid.uuid4(),
        payee=f"usr_{uuid.uuid4().hex}",
        reference=f"pay_{uuid.uuid4().hex}",
        step_up_verified=step_up_verified,
    )


async def add_active_rule(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    expression: str,
    action: Action,
    score: int = 100,
    shadow: bool = False,
    mode: str = "test",
    responses: tuple[Response, ...] = (),
    name: str | None = None,
) -> uuid.UUID:
    """An active rule version written straight to the tables (the engine's view of a
    rule, without change management), the ruleset version bumped."""
    now = time.time_ns()
    ruleset = await RulesetRepository(session).bump(tenant_id=tenant_id, mode=mode, now_ns=now)
    rule_id, author = new_id(), uuid.uuid4()
    session.add(
        RiskRule(
            id=rule_id,
            tenant_id=tenant_id,
            mode=mode,
            name=name or f"rule-{rule_id.hex[-8:]}",
            current_version=1,
            latest_version=1,
            created_by=author,
            created_at=now,
            updated_at=now,
        )
    )
    session.add(
        RiskRuleVersion(
            id=new_id(),
            rule_id=rule_id,
            tenant_id=tenant_id,
            mode=mode,
            version=1,
            expression=expression,
            action=action.value,
            score=score,
            reason=f"{action.value}: {expression}",
            responses=json.dumps([response.value for response in responses]),
            enforcement="shadow" if shadow else "enforcing",
            state="active",
            created_by=author,
            created_at=now,
            approval_id=None,
            activated_at=now,
            activated_by=author,
            active_from_ruleset=ruleset,
            active_until_ruleset=None,
        )
    )
    await session.flush()
    return rule_id


def run(database_url: str, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run ``action`` with a unit of work on its own engine."""

    async def go() -> T:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            return await action(UnitOfWork(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())

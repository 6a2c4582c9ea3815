"""Every query of risk's rules, ruleset versions and decisions (flush only, never commit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.upsert import insert_if_absent
from billfold.risk.models import RiskDecision, RiskLabel, RiskRule, RiskRuleset, RiskRuleVersion

__all__ = ["DecisionRepository", "RuleRepository", "RulesetRepository"]


class RuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(
        self, *, tenant_id: uuid.UUID, rule_id: uuid.UUID, for_update: bool = False
    ) -> RiskRule | None:
        """The tenant's rule (locked until the transaction ends, with ``for_update``, so
        two new versions of one rule are numbered one after the other)."""
        statement = select(RiskRule).where(RiskRule.id == rule_id, RiskRule.tenant_id == tenant_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def name_taken(self, *, tenant_id: uuid.UUID, mode: str, name: str) -> bool:
        statement = select(RiskRule.id).where(
            RiskRule.tenant_id == tenant_id, RiskRule.mode == mode, RiskRule.name == name
        )
        return (await self._session.execute(statement)).first() is not None

    async def list_for_tenant(
        self, *, tenant_id: uuid.UUID, mode: str | None, after_id: uuid.UUID | None, limit: int
    ) -> Sequence[RiskRule]:
        """Oldest first, from after ``after_id``."""
        statement = select(RiskRule).where(RiskRule.tenant_id == tenant_id)
        if mode is not None:
            statement = statement.where(RiskRule.mode == mode)
        if after_id is not None:
            statement = statement.where(RiskRule.id > after_id)
        statement = statement.order_by(RiskRule.id).limit(limit)
        return (await self._session.execute(statement)).scalars().all()

    async def versions(self, *, rule_id: uuid.UUID, limit: int) -> Sequence[RiskRuleVersion]:
        """The rule's newest versions, newest first."""
        statement = (
            select(RiskRuleVersion)
            .where(RiskRuleVersion.rule_id == rule_id)
            .order_by(RiskRuleVersion.version.desc())
            .limit(limit)
        )
        return (await self._session.execute(statement)).scalars().all()

    async def version(
        self, *, tenant_id: uuid.UUID, rule_id: uuid.UUID, version: int
    ) -> RiskRuleVersion | None:
        statement = select(RiskRuleVersion).where(
            RiskRuleVersion.tenant_id == tenant_id,
            RiskRuleVersion.rule_id == rule_id,
            RiskRuleVersion.version == version,
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def in_state(
        self, *, rule_id: uuid.UUID, states: Sequence[str]
    ) -> Sequence[RiskRuleVersion]:
        statement = select(RiskRuleVersion).where(
            RiskRuleVersion.rule_id == rule_id, RiskRuleVersion.state.in_(states)
        )
        return (await self._session.execute(statement)).scalars().all()

    async def active(
        self, *, tenant_id: uuid.UUID, mode: str
    ) -> Sequence[tuple[RiskRuleVersion, str]]:
        """The active version of every rule, with the rule's name, by rule id."""
        statement = (
            select(RiskRuleVersion, RiskRule.name)
            .join(RiskRule, RiskRule.id == RiskRuleVersion.rule_id)
            .where(
                RiskRuleVersion.tenant_id == tenant_id,
                RiskRuleVersion.mode == mode,
                RiskRuleVersion.state == "active",
            )
            .order_by(RiskRuleVersion.rule_id)
        )
        return [(version, name) for version, name in await self._session.execute(statement)]

    async def active_at(
        self, *, tenant_id: uuid.UUID, mode: str, ruleset_version: int
    ) -> Sequence[tuple[RiskRuleVersion, str]]:
        """The versions that were active at a ruleset version, with their rules' names."""
        statement = (
            select(RiskRuleVersion, RiskRule.name)
            .join(RiskRule, RiskRule.id == RiskRuleVersion.rule_id)
            .where(
                RiskRuleVersion.tenant_id == tenant_id,
                RiskRuleVersion.mode == mode,
                RiskRuleVersion.active_from_ruleset <= ruleset_version,
                or_(
                    RiskRuleVersion.active_until_ruleset.is_(None),
                    RiskRuleVersion.active_until_ruleset > ruleset_version,
                ),
            )
            .order_by(RiskRuleVersion.rule_id)
        )
        return [(version, name) for version, name in await self._session.execute(statement)]


class RulesetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def current(self, *, tenant_id: uuid.UUID, mode: str) -> int:
        """The tenant's ruleset version; 0 before the first change."""
        statement = select(RiskRuleset.version).where(
            RiskRuleset.tenant_id == tenant_id, RiskRuleset.mode == mode
        )
        return int((await self._session.execute(statement)).scalar_one_or_none() or 0)

    async def bump(self, *, tenant_id: uuid.UUID, mode: str, now_ns: int) -> int:
        """The next ruleset version, taken under the row's lock (concurrent changes of one
        tenant are numbered one after the other)."""
        await insert_if_absent(
            self._session,
            RiskRuleset,
            {"tenant_id": tenant_id, "mode": mode, "version": 0, "updated_at": now_ns},
        )
        result = await self._session.execute(
            update(RiskRuleset)
            .where(RiskRuleset.tenant_id == tenant_id, RiskRuleset.mode == mode)
            .values(version=RiskRuleset.version + 1, updated_at=now_ns)
            .returning(RiskRuleset.version)
            .execution_options(synchronize_session=False)
        )
        return int(result.scalar_one())


class DecisionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(
        self, *, tenant_id: uuid.UUID, mode: str, decision_id: uuid.UUID
    ) -> RiskDecision | None:
        statement = select(RiskDecision).where(
            RiskDecision.id == decision_id,
            RiskDecision.tenant_id == tenant_id,
            RiskDecision.mode == mode,
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_for_tenant(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: str,
        user_id: uuid.UUID | None,
        action: str | None,
        kind: str | None,
        since_ns: int | None,
        before_id: uuid.UUID | None,
        limit: int,
    ) -> Sequence[RiskDecision]:
        """Newest first (ids are time-ordered), from before ``before_id``."""
        statement = select(RiskDecision).where(
            RiskDecision.tenant_id == tenant_id, RiskDecision.mode == mode
        )
        if user_id is not None:
            statement = statement.where(RiskDecision.user_id == user_id)
        if action is not None:
            statement = statement.where(RiskDecision.action == action)
        if kind is not None:
            statement = statement.where(RiskDecision.kind == kind)
        if since_ns is not None:
            statement = statement.where(RiskDecision.created_at >= since_ns)
        if before_id is not None:
            statement = statement.where(RiskDecision.id < before_id)
        statement = statement.order_by(RiskDecision.id.desc()).limit(limit)
        return (await self._session.execute(statement)).scalars().all()

    async def since(
        self,
        *,
        tenant_id: uuid.UUID | None,
        mode: str | None,
        since_ns: int,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> Sequence[RiskDecision]:
        """Decisions made at or after ``since_ns``, oldest first (for a backtest), of one
        tenant and mode or of every one."""
        statement = select(RiskDecision).where(RiskDecision.created_at >= since_ns)
        if tenant_id is not None:
            statement = statement.where(RiskDecision.tenant_id == tenant_id)
        if mode is not None:
            statement = statement.where(RiskDecision.mode == mode)
        if after_id is not None:
            statement = statement.where(RiskDecision.id > after_id)
        statement = statement.order_by(RiskDecision.id).limit(limit)
        return (await self._session.execute(statement)).scalars().all()

    async def count_since(
        self, *, tenant_id: uuid.UUID | None, mode: str | None, since_ns: int
    ) -> int:
        statement = select(func.count()).select_from(RiskDecision)
        statement = statement.where(RiskDecision.created_at >= since_ns)
        if tenant_id is not None:
            statement = statement.where(RiskDecision.tenant_id == tenant_id)
        if mode is not None:
            statement = statement.where(RiskDecision.mode == mode)
        return int((await self._session.execute(statement)).scalar_one())

    async def fraud_labels(self, *, decision_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bool]:
        """The labels of these decisions (fraud if any source says so)."""
        if not decision_ids:
            return {}
        statement = select(RiskLabel.decision_id, RiskLabel.fraud).where(
            RiskLabel.decision_id.in_(decision_ids)
        )
        labels: dict[uuid.UUID, bool] = {}
        for decision_id, fraud in await self._session.execute(statement):
            if decision_id is not None:
                labels[decision_id] = labels.get(decision_id, False) or bool(fraud)
        return labels

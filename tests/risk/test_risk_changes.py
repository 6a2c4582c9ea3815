"""The executor of risk_rule_change: activates the pending version once per approval id,
refuses a version it was not asked for, and the ruleset version moves once."""

from __future__ import annotations

import json
import time
import uuid

from billfold.identity.operators.executors import ApprovedAction, ExecutionOutcome
from billfold.identity.operators.permissions import ActionType, Role
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.changes import RuleChangeExecutor, RuleDraft, create_rule
from billfold.risk.repository import RuleRepository, RulesetRepository
from billfold.risk.types import Action
from identity.operators.operators_support import new_tenant, operator, principal_of
from risk.risk_support import run


def test_the_executor_is_idempotent_on_the_approval_id(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    author = principal_of(
        database_url, operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    )
    draft = RuleDraft(
        expression="amount > 100000",
        action=Action.BLOCK,
        score=700,
        reason="Very large",
        enforcement="enforcing",
    )

    async def go(unit_of_work: UnitOfWork) -> list[ExecutionOutcome]:
        async with unit_of_work.begin() as session:
            change = await create_rule(
                session,
                principal=author,
                mode="live",
                name="very-large",
                draft=draft,
                now_ns=time.time_ns(),
            )
            assert change.version is not None and change.version.approval_id is not None
            rule_id, approval_id = change.rule.id, change.version.approval_id
        payload = json.dumps({"rule_id": format_id("rrl", rule_id), "version": 1})

        def approved(approval: uuid.UUID) -> ApprovedAction:
            return ApprovedAction(
                approval_id=approval,
                tenant_id=tenant_id,
                action_type=ActionType.RISK_RULE_CHANGE,
                payload=payload,
                requested_by=author.operator_id,
                decided_by=uuid.uuid4(),
                decided_at=time.time_ns(),
            )

        outcomes = []
        for approval in (uuid.uuid4(), approval_id, approval_id):
            async with unit_of_work.begin() as session:
                outcomes.append(await RuleChangeExecutor().execute(session, approved(approval)))
        async with unit_of_work.begin() as session:
            ruleset = await RulesetRepository(session).current(tenant_id=tenant_id, mode="live")
            rule = await RuleRepository(session).get(tenant_id=tenant_id, rule_id=rule_id)
            assert ruleset == 1 and rule is not None and rule.current_version == 1
        return outcomes

    stranger, first, again = run(database_url, go)
    assert (stranger.succeeded, stranger.facts["failure"]) == (False, "not_requested")
    assert first.succeeded and first.facts["ruleset_version"] == 1
    assert again.succeeded and again.facts["already_active"] is True

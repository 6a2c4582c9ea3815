"""The risk resources against the real application: an analyst writes rules (an enforcing
one approved by a second operator), dry-runs an expression, disables a rule; decisions are
read with a `risk:read` key and by the operator."""

from __future__ import annotations

import pytest

from billfold.client import PermissionDeniedError, ValidationError
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Scope
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.service import RiskEngine
from billfold.risk.types import Action
from client.sdk_support import running
from risk.risk_support import FixedFeatures, add_active_rule, movement, run


def test_rules_written_approved_and_disabled_through_the_sdk(database_url: str) -> None:
    with running(database_url) as server:
        analyst = server.signed_in_operator([Role.RISK_ANALYST])
        approver = server.signed_in_operator([Role.COMPLIANCE_OFFICER])
        created = analyst.risk_rules.create(
            name="night-withdrawals",
            mode="live",
            expression='kind == "withdrawal" && hour_of_day < 5',
            action="challenge",
            score=200,
            reason="A withdrawal at night",
            enforcement="enforcing",
        )
        version = created["versions"][0]
        assert version["state"] == "pending_approval" and version["approval_id"]
        with pytest.raises(PermissionDeniedError) as own:
            analyst.approvals.approve(version["approval_id"])
        assert own.value.code == "self_approval_forbidden"
        assert approver.approvals.approve(version["approval_id"])["status"] == "executed"
        assert approver.risk_rules.get(created["id"])["current_version"] == 1
        assert [rule["id"] for rule in analyst.risk_rules.iterate(mode="live")] == [created["id"]]
        dry = analyst.risk_rules.evaluate(
            expression=version["expression"], features={"kind": "withdrawal", "hour_of_day": 3}
        )
        assert dry == {"matched": True, "error": None}
        with pytest.raises(ValidationError) as refused:
            analyst.risk_rules.add_version(
                created["id"],
                expression="unknown_feature > 1",
                action="block",
                score=10,
                reason="r",
                enforcement="shadow",
            )
        assert refused.value.code == "invalid_rule"
        # The rule enforces: disabling it waits for a second operator too.
        asked = analyst.risk_rules.disable(created["id"])
        assert asked["current_version"] == 1 and asked["disable_approval_id"]
        assert approver.approvals.approve(asked["disable_approval_id"])["status"] == "executed"
        assert analyst.risk_rules.get(created["id"])["current_version"] is None
        for client in (analyst, approver):
            client.close()


def test_decisions_read_with_a_key_and_by_an_operator(database_url: str) -> None:
    with running(database_url) as server:
        tenant_id = server.tenant.tenant.id

        async def decide(unit_of_work: UnitOfWork) -> str:
            async with unit_of_work.begin() as session:
                await add_active_rule(
                    session, tenant_id=tenant_id, expression="true", action=Action.REVIEW
                )
            async with unit_of_work.begin() as session:
                decision = await RiskEngine(FixedFeatures()).decide(session, movement(tenant_id))
            return format_id("rdc", decision.id)

        decision_id = run(database_url, decide)
        with server.billfold([Scope.RISK_READ]) as billfold:
            [listed] = billfold.risk_decisions.list(action="review")["items"]
            assert listed["id"] == decision_id
            explained = billfold.risk_decisions.get(decision_id)
            assert explained["hits"][0]["shadow"] is False and explained["action"] == "review"
        analyst = server.signed_in_operator([Role.RISK_ANALYST])
        seen = [item["id"] for item in analyst.risk_decisions.iterate(mode="test")]
        assert seen == [decision_id]
        assert analyst.risk_decisions.get(decision_id, mode="test")["features"]["amount"] == 12_500
        analyst.close()

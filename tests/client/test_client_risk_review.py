"""The operator SDK's risk review against the real application: the queue, a note, an
approval that posts the hold (through a resolver over the real ledger), a decision twice
refused, and a response applied then reversed by a second operator."""

from __future__ import annotations

import pytest

from billfold.client import ConflictError
from billfold.identity.operators.permissions import Role
from client.sdk_support import running
from identity.operators.operators_support import end_user
from risk.cases.cases_support import LedgerResolver, funded_holder, held_movement, wallet_balances


def test_an_analyst_works_the_queue_and_reverses_a_response_with_a_second_operator(
    database_url: str,
) -> None:
    with running(database_url) as server:
        state = server.client.app.state  # type: ignore[attr-defined]
        state.held_resolver = LedgerResolver(state.ledger)
        tenant_id = server.tenant.tenant.id
        user = end_user(database_url, tenant_id=tenant_id)
        holder = funded_holder(database_url, tenant_id=tenant_id, user=user)
        held_movement(database_url, holder, amount=2_000)
        analyst = server.signed_in_operator([Role.RISK_ANALYST])
        officer = server.signed_in_operator([Role.COMPLIANCE_OFFICER])
        with analyst, officer:
            [case] = list(analyst.risk_cases.iterate(limit=1))
            assert case["state"] == "open" and case["amount"] == "2000"
            note = analyst.risk_cases.add_note(case["id"], body="Looks like the user's own")
            assert note["body"] == "Looks like the user's own"
            decided = analyst.risk_cases.approve(case["id"], idempotency_key="decide-1")
            assert decided["state"] == "approved"
            assert decided["decision"] is not None and decided["decision"]["score"] == 720
            assert wallet_balances(database_url, holder)["payee_posted"] == 2_000
            with pytest.raises(ConflictError) as twice:
                officer.risk_cases.reject(case["id"])
            assert twice.value.code == "case_not_open"
            assert analyst.risk_cases.label(case["id"], fraud=True)["id"] == case["id"]
            assert analyst.risk_cases.list(state="approved")["items"][0]["id"] == case["id"]

            applied = analyst.risk_responses.apply(
                user_id=user, kind="lower_limits", reason="Velocity spike", limit_bps=500
            )
            assert applied["detail"]["limit_bps"] == 500
            asked = analyst.risk_responses.reverse(applied["id"], reason="Explained")
            assert asked["response"]["state"] == "reversing"
            officer.approvals.approve(asked["approval_id"])
            assert analyst.risk_responses.get(applied["id"])["state"] == "reversed"
            assert [r["id"] for r in analyst.risk_responses.iterate(user_id=user)] == [
                applied["id"]
            ]

"""Four eyes need two operators who may each do their part *when the act happens*: a
request whose requester has since been disabled, or no longer holds the permission to ask
for it, cannot be approved (409 ``requester_not_permitted``) and executes nothing; it can
still be refused, or left to expire. On both backends."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators.permissions import Role
from billfold.kit.ids import parse_id
from billfold.wallets.models import LimitOverride
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import SignedIn, end_user, new_tenant, operator
from identity.operators.operators_support import operator_client as client_for

PROBLEM = "application/problem+json"


def _increase(subject: str) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds",
        "payload": {"subject_id": subject, "limit": "daily", "asset": "USD", "amount": 900_000},
    }


def _overrides_of(database_url: str, approval_id: str) -> int:
    async def count(session: AsyncSession) -> int:
        statement = select(func.count()).where(
            LimitOverride.approval_id == parse_id("apr", approval_id)
        )
        return int((await session.execute(statement)).scalar_one())

    return run_in_unit_of_work(database_url, count)


def _desk(database_url: str) -> tuple[uuid.UUID, SignedIn, SignedIn, SignedIn, str]:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    compliance = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    return tenant_id, admin, support, compliance, end_user(database_url, tenant_id=tenant_id)


def _ask(client: TestClient, who: SignedIn, subject: str) -> str:
    response = client.post("/v1/approvals", json=_increase(subject), headers=who.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assert_not_approvable(
    client: TestClient, database_url: str, approval_id: str, requester: SignedIn, who: SignedIn
) -> None:
    approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=who.headers)
    assert approved.status_code == 409, approved.text
    assert approved.headers["content-type"] == PROBLEM
    assert approved.json()["code"] == "requester_not_permitted"
    assert approved.json()["requested_by"] == requester.public_id
    seen = client.get(f"/v1/approvals/{approval_id}", headers=who.headers).json()
    assert (seen["status"], seen["decided_by"], seen["result"]) == ("pending", None, None)
    assert _overrides_of(database_url, approval_id) == 0
    refused = client.post(
        f"/v1/approvals/{approval_id}/refuse", json={"note": "Requester left"}, headers=who.headers
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"


def test_a_disabled_requesters_request_cannot_be_approved(database_url: str) -> None:
    _, admin, support, compliance, holder = _desk(database_url)
    with client_for(database_url) as client:
        approval_id = _ask(client, support, holder)
        disabled = client.post(f"/v1/operators/{support.public_id}/disable", headers=admin.headers)
        assert disabled.status_code == 200, disabled.text
        _assert_not_approvable(client, database_url, approval_id, support, compliance)


def test_a_requester_who_lost_the_permission_cannot_have_it_approved(database_url: str) -> None:
    _, admin, support, compliance, holder = _desk(database_url)
    with client_for(database_url) as client:
        approval_id = _ask(client, support, holder)
        moved = client.put(
            f"/v1/operators/{support.public_id}/roles",
            json={"roles": ["finance"]},  # finance may not ask for limit increases
            headers=admin.headers,
        )
        assert moved.status_code == 200, moved.text
        _assert_not_approvable(client, database_url, approval_id, support, compliance)


def test_a_requester_still_permitted_is_approved_as_before(database_url: str) -> None:
    _, admin, support, compliance, holder = _desk(database_url)
    with client_for(database_url) as client:
        approval_id = _ask(client, support, holder)
        widened = client.put(
            f"/v1/operators/{support.public_id}/roles",
            json={"roles": ["risk_analyst", "support"]},  # still may ask
            headers=admin.headers,
        )
        assert widened.status_code == 200, widened.text
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=compliance.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "executed"
    assert _overrides_of(database_url, approval_id) == 1

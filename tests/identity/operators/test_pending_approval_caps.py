"""Pending four-eyes requests are capped per operator as well as per tenant: one operator
(or whoever took over its session) filling the tenant's cap would block every other
operator's requests, so each has a share of its own (409
``requester_pending_approval_limit_reached``), below the tenant's (409
``pending_approval_limit_reached``). Both are counted under a per-tenant lock held until
the request commits, so concurrent requests cannot each take the last place. On both
backends (the caps made small here; the counting is the same)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators import approvals
from billfold.identity.operators.errors import (
    PendingApprovalLimitReached,
    RequesterPendingApprovalLimitReached,
)
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    SignedIn,
    end_user,
    new_tenant,
    operator,
    operator_client,
    principal_of,
)

PROBLEM = "application/problem+json"


def _increase(subject: str) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds",
        "payload": {"subject_id": subject, "limit": "daily", "asset": "USD", "amount": 900_000},
    }


def _requests_of(database_url: str, tenant_id: uuid.UUID) -> int:
    async def count(session: AsyncSession) -> int:
        statement = select(func.count()).where(ApprovalRequest.tenant_id == tenant_id)
        return int((await session.execute(statement)).scalar_one())

    return run_in_unit_of_work(database_url, count)


def _ask(client: TestClient, who: SignedIn, subject: str) -> Any:
    return client.post("/v1/approvals", json=_increase(subject), headers=who.headers)


def _assert_capped(response: Any, code: str, limit: int) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    assert (response.json()["code"], response.json()["limit"]) == (code, limit)


def test_the_caps_as_shipped() -> None:
    assert approvals.PENDING_APPROVALS_PER_REQUESTER_MAX == 100
    assert approvals.PENDING_APPROVALS_PER_TENANT_MAX == 1_000
    assert (
        approvals.PENDING_APPROVALS_PER_REQUESTER_MAX < approvals.PENDING_APPROVALS_PER_TENANT_MAX
    )


def test_one_operator_cannot_fill_the_tenants_cap(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_REQUESTER_MAX", 2)
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_TENANT_MAX", 5)
    tenant_id = new_tenant(database_url).tenant.id
    eager = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    compliance = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    holder = end_user(database_url, tenant_id=tenant_id)
    with operator_client(database_url) as client:
        first = [_ask(client, eager, holder) for _ in range(2)]
        assert [r.status_code for r in first] == [201, 201], [r.text for r in first]
        _assert_capped(_ask(client, eager, holder), "requester_pending_approval_limit_reached", 2)
        # The others' requests still go through.
        assert _ask(client, colleague, holder).status_code == 201
        assert _requests_of(database_url, tenant_id) == 3  # the refused one stored nothing
        # A decided request no longer counts: its place is free again.
        refused = client.post(
            f"/v1/approvals/{first[0].json()['id']}/refuse",
            json={"note": "Not now"},
            headers=compliance.headers,
        )
        assert refused.status_code == 200, refused.text
        assert _ask(client, eager, holder).status_code == 201


def test_the_tenants_cap_still_holds(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_REQUESTER_MAX", 2)
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_TENANT_MAX", 3)
    tenant_id = new_tenant(database_url).tenant.id
    first, second = (
        operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT]) for _ in range(2)
    )
    holder = end_user(database_url, tenant_id=tenant_id)
    with operator_client(database_url) as client:
        made = [_ask(client, who, holder).status_code for who in (first, first, second)]
        assert made == [201, 201, 201]
        _assert_capped(_ask(client, second, holder), "pending_approval_limit_reached", 3)
    assert _requests_of(database_url, tenant_id) == 3


async def _request(session: AsyncSession, principal: OperatorPrincipal, subject: str) -> None:
    await approvals.create_approval_request(
        session,
        principal=principal,
        action_type=ActionType.LIMIT_INCREASE,
        payload=_increase(subject)["payload"],
        reason="Verified source of funds",
        expires_in_s=None,
        now_ns=time.time_ns(),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("requester_max", "tenant_max", "refusal"),
    [(2, 10, RequesterPendingApprovalLimitReached), (10, 2, PendingApprovalLimitReached)],
    ids=["requester", "tenant"],
)
async def test_concurrent_requests_cannot_both_take_the_last_place(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    requester_max: int,
    tenant_max: int,
    refusal: type[PendingApprovalLimitReached],
) -> None:
    """One place left; a second request starts while the first, which takes it, is still
    open. On PostgreSQL the two transactions truly overlap: without the lock the second
    would count the first's uncommitted request as absent and take the place too. On SQLite
    the writer lock already serializes them, so there the test only confirms the outcome."""
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_REQUESTER_MAX", requester_max)
    monkeypatch.setattr(approvals, "PENDING_APPROVALS_PER_TENANT_MAX", tenant_max)
    tenant_id = await asyncio.to_thread(lambda: new_tenant(database_url).tenant.id)
    requester = await asyncio.to_thread(
        lambda: principal_of(
            database_url, operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
        )
    )
    holder = await asyncio.to_thread(lambda: end_user(database_url, tenant_id=tenant_id))
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)

    async def second_request() -> PendingApprovalLimitReached | None:
        try:
            async with unit_of_work.begin() as session:
                await _request(session, requester, holder)
        except PendingApprovalLimitReached as refused:
            return refused
        return None

    try:
        async with unit_of_work.begin() as session:
            await _request(session, requester, holder)  # the one place before the last
        async with unit_of_work.begin() as session:
            await _request(session, requester, holder)  # the last place
            overlapping = asyncio.create_task(second_request())
            await asyncio.sleep(0.5)  # it counts (and, unguarded, inserts) while this is open
        outcome = await overlapping
    finally:
        await engine.dispose()
    assert type(outcome) is refusal, outcome
    assert await asyncio.to_thread(_requests_of, database_url, tenant_id) == 2

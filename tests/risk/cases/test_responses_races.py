"""Automated responses under concurrency, on PostgreSQL's real connections: two decisions
for one user at once apply one freeze, not two; two reversal requests at once after a
refusal make one pending approval, not two (the other is refused ``response_not_active``).
Each race is forced: the first side holds its transaction open while the second runs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.flows import risk_cases
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.permissions import Role
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.cases.responses import apply_responses
from billfold.risk.models import RiskResponse
from billfold.risk.types import Movement, MovementKind, Response
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    SignedIn,
    end_user,
    new_tenant,
    operator,
    operator_client,
)
from risk.cases.cases_support import Holder, decision_for, funded_holder, store_decision

HELD_S = 1.0
"""How long the first side keeps its transaction open while the second runs."""


@pytest.fixture
def postgres_url(backend: str, database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: these races need PostgreSQL")
    return database_url


@pytest.fixture
def people(postgres_url: str) -> Iterator[tuple[Any, SignedIn, SignedIn, Holder]]:
    tenant_id = new_tenant(postgres_url).tenant.id
    analyst = operator(postgres_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    officer = operator(postgres_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    user = end_user(postgres_url, tenant_id=tenant_id)
    holder = funded_holder(postgres_url, tenant_id=tenant_id, user=user)
    with operator_client(postgres_url) as client:
        yield client, analyst, officer, holder


def _movement(holder: Holder) -> Movement:
    return Movement(
        tenant_id=holder.tenant_id,
        mode="test",
        kind=MovementKind.WITHDRAWAL,
        amount=90_000,
        currency="USD",
        occurred_at_ns=time.time_ns(),
        user_id=holder.user_id,
        reference=f"pay_{uuid.uuid4().hex}",
    )


def _responses(database_url: str, holder: Holder) -> list[RiskResponse]:
    async def read(session: AsyncSession) -> list[RiskResponse]:
        rows = await session.execute(
            select(RiskResponse).where(RiskResponse.user_id == holder.user_id)
        )
        return list(rows.scalars())

    return run_in_unit_of_work(database_url, read)


def test_two_decisions_at_once_apply_one_freeze(
    postgres_url: str, people: tuple[Any, SignedIn, SignedIn, Holder]
) -> None:
    client, _, _, holder = people
    unit_of_work: UnitOfWork = client.app.state.unit_of_work

    async def race() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        first_applied = asyncio.Event()
        release = asyncio.Event()

        async def decide(*, hold: bool) -> list[uuid.UUID]:
            movement = _movement(holder)
            decision = decision_for(movement, responses=(Response.FREEZE_ACCOUNT,))
            async with unit_of_work.begin() as session:
                await store_decision(session, decision, movement)
                applied = await apply_responses(
                    session, decision=decision, movement=movement, at_ns=time.time_ns()
                )
                if hold:
                    first_applied.set()
                    await release.wait()
            return applied

        first = asyncio.ensure_future(decide(hold=True))
        await first_applied.wait()
        second = asyncio.ensure_future(decide(hold=False))
        await asyncio.sleep(HELD_S)  # the second decision runs meanwhile (or waits)
        release.set()
        return await first, await second

    first, second = client.portal.call(race)
    assert len(first) == 1 and second == []
    stored = _responses(postgres_url, holder)
    assert [(row.kind, row.state) for row in stored] == [("freeze_account", "active")]


def test_two_reversal_requests_at_once_after_a_refusal_make_one_approval(
    postgres_url: str,
    people: tuple[Any, SignedIn, SignedIn, Holder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, analyst, officer, holder = people
    body = {"user_id": format_id("usr", holder.user_id), "kind": "hold_outgoing", "reason": "ato"}
    applied = client.post("/v1/risk/responses", json=body, headers=analyst.headers)
    assert applied.status_code == 201, applied.text
    response_id = applied.json()["id"]
    path = f"/v1/risk/responses/{response_id}/reverse"
    asked = client.post(path, json={"reason": "verified"}, headers=analyst.headers)
    assert asked.status_code == 201, asked.text
    refused = client.post(
        f"/v1/approvals/{asked.json()['approval_id']}/refuse",
        json={"note": "not convinced"},
        headers=officer.headers,
    )
    assert refused.status_code == 200, refused.text

    original: Callable[..., Awaitable[ApprovalRequest]] = (
        risk_cases.approvals.create_approval_request
    )
    inside, release = asyncio.Event(), asyncio.Event()

    async def create_then_hold(*args: Any, **kwargs: Any) -> ApprovalRequest:
        made = await original(*args, **kwargs)
        if not inside.is_set():  # the first request keeps its transaction open a while
            inside.set()
            await release.wait()
        return made

    monkeypatch.setattr(risk_cases.approvals, "create_approval_request", create_then_hold)

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

            async def ask(who: SignedIn) -> int:
                answer = await http.post(path, json={"reason": "again"}, headers=who.headers)
                return answer.status_code

            first = asyncio.ensure_future(ask(analyst))
            await inside.wait()
            second = asyncio.ensure_future(ask(officer))
            await asyncio.sleep(HELD_S)  # the second request runs meanwhile (or waits)
            release.set()
            return [await first, await second]

    statuses = client.portal.call(race)
    assert statuses == [201, 409]

    async def pending(session: AsyncSession) -> int:
        rows = await session.execute(
            select(ApprovalRequest.id).where(
                ApprovalRequest.tenant_id == holder.tenant_id,
                ApprovalRequest.status == "pending",
            )
        )
        return len(list(rows.scalars()))

    assert run_in_unit_of_work(postgres_url, pending) == 1

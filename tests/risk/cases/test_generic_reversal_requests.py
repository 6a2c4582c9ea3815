"""A reversal asked at the generic ``POST /v1/approvals`` is as safe as one asked at
``POST /v1/risk/responses/{id}/reverse``: its check runs in the transaction that stores
the request, with the response locked, so two such requests at once make one pending
approval (the other: 409 ``response_not_active``), and the response turns ``reversing``
as it does at ``/reverse``. The race is forced on PostgreSQL's real connections: the
first request holds its transaction open while the second runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators import approvals
from billfold.identity.operators.models import ApprovalRequest
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import SignedIn
from risk.cases.cases_support import Holder
from risk.cases.test_responses import Desk, desk
from risk.cases.test_responses_races import HELD_S, people, postgres_url

__all__ = ["desk", "people", "postgres_url"]

_REASON = "Customer verified in branch"


def _body(response_id: object) -> dict[str, object]:
    return {
        "action_type": "risk_response_reversal",
        "reason": _REASON,
        "payload": {"response_id": response_id},
    }


def _pending(database_url: str, tenant_id: object) -> int:
    async def read(session: AsyncSession) -> int:
        rows = await session.execute(
            select(ApprovalRequest.id).where(
                ApprovalRequest.tenant_id == tenant_id, ApprovalRequest.status == "pending"
            )
        )
        return len(list(rows.scalars()))

    return run_in_unit_of_work(database_url, read)


def test_a_generic_request_marks_the_response_reversing(desk: Desk) -> None:
    applied = desk.apply("hold_outgoing")
    asked = desk.client.post(
        "/v1/approvals", json=_body(applied["id"]), headers=desk.officer.headers
    )
    assert asked.status_code == 201, asked.text
    assert desk.get(applied["id"])["state"] == "reversing"
    refused = desk.client.post(
        f"/v1/approvals/{asked.json()['id']}/refuse",
        json={"note": "not convinced"},
        headers=desk.analyst.headers,
    )
    assert refused.status_code == 200, refused.text
    again = desk.client.post(
        "/v1/approvals", json=_body(applied["id"]), headers=desk.officer.headers
    )
    assert again.status_code == 201, again.text  # a refused request may be asked again
    assert _pending(desk.database_url, desk.holder.tenant_id) == 1


def test_a_generic_request_for_a_reversed_response_is_refused(desk: Desk) -> None:
    applied = desk.apply("hold_outgoing")
    reversal = desk.reverse(applied["id"])
    desk.approve(reversal["approval_id"], desk.officer)
    assert desk.get(applied["id"])["state"] == "reversed"
    asked = desk.client.post(
        "/v1/approvals", json=_body(applied["id"]), headers=desk.officer.headers
    )
    assert asked.status_code == 422, asked.text
    assert asked.json()["code"] == "invalid_approval_payload"
    assert _pending(desk.database_url, desk.holder.tenant_id) == 0


def test_two_generic_reversal_requests_at_once_make_one_approval(
    postgres_url: str,
    people: tuple[Any, SignedIn, SignedIn, Holder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, analyst, officer, holder = people
    body = {"user_id": f"usr_{holder.user_id.hex}", "kind": "hold_outgoing", "reason": "ato"}
    applied = client.post("/v1/risk/responses", json=body, headers=analyst.headers)
    assert applied.status_code == 201, applied.text
    response_id = applied.json()["id"]

    original: Callable[..., Awaitable[ApprovalRequest]] = approvals.create_approval_request
    inside, release = asyncio.Event(), asyncio.Event()

    async def create_then_hold(*args: Any, **kwargs: Any) -> ApprovalRequest:
        made = await original(*args, **kwargs)
        if not inside.is_set():  # the first request keeps its transaction open a while
            inside.set()
            await release.wait()
        return made

    monkeypatch.setattr(approvals, "create_approval_request", create_then_hold)

    async def race() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

            async def ask(who: SignedIn) -> httpx.Response:
                return await http.post(
                    "/v1/approvals", json=_body(response_id), headers=who.headers
                )

            first = asyncio.ensure_future(ask(analyst))
            await inside.wait()
            second = asyncio.ensure_future(ask(officer))
            await asyncio.sleep(HELD_S)  # the second request runs meanwhile (or waits)
            release.set()
            return [await first, await second]

    first, second = client.portal.call(race)
    assert first.status_code == 201, first.text
    assert second.status_code == 409, second.text
    assert second.json()["code"] == "response_not_active"
    assert _pending(postgres_url, holder.tenant_id) == 1
    shown = client.get(f"/v1/risk/responses/{response_id}", headers=analyst.headers)
    assert shown.json()["state"] == "reversing"

"""A response's reversal may be asked at ``POST /v1/risk/responses/{id}/reverse`` or at the
generic ``POST /v1/approvals``: whichever comes second while the first waits is refused
(409 ``response_not_active``), so one reversal never has two pending approvals."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators.models import ApprovalRequest
from identity.identity_support import run_in_unit_of_work
from risk.cases.test_responses import Desk, desk

__all__ = ["desk"]


def _ask_generic(desk: Desk, response_id: object) -> object:
    return desk.client.post(
        "/v1/approvals",
        json={
            "action_type": "risk_response_reversal",
            "reason": "Customer verified in branch",
            "payload": {"response_id": response_id},
        },
        headers=desk.officer.headers,
    )


def _pending(desk: Desk) -> int:
    async def read(session: AsyncSession) -> int:
        rows = await session.execute(
            select(ApprovalRequest.id).where(
                ApprovalRequest.tenant_id == desk.holder.tenant_id,
                ApprovalRequest.status == "pending",
            )
        )
        return len(list(rows.scalars()))

    return run_in_unit_of_work(desk.database_url, read)


def test_a_generic_request_while_a_reversal_waits_is_refused(desk: Desk) -> None:
    applied = desk.apply("hold_outgoing")
    desk.reverse(applied["id"])
    second = _ask_generic(desk, applied["id"])
    assert second.status_code == 409, second.text  # type: ignore[attr-defined]
    assert second.json()["code"] == "response_not_active"  # type: ignore[attr-defined]
    assert _pending(desk) == 1


def test_a_reverse_while_a_generic_request_waits_is_refused(desk: Desk) -> None:
    applied = desk.apply("hold_outgoing")
    first = _ask_generic(desk, applied["id"])
    assert first.status_code == 201, first.text  # type: ignore[attr-defined]
    second = desk.client.post(
        f"/v1/risk/responses/{applied['id']}/reverse",
        json={"reason": "again"},
        headers=desk.analyst.headers,
    )
    assert second.status_code == 409, second.text
    assert second.json()["code"] == "response_not_active"
    assert _pending(desk) == 1
    # Reversing since the generic request (as after /reverse); the refused one changed nothing.
    assert desk.get(applied["id"])["state"] == "reversing"

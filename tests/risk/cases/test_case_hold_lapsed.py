"""A case whose hold has lapsed can no longer be approved, even before the expiry sweep
reached it: the hold's end is the payer's promise that the money is released by then.
The approval is refused (409 ``case_hold_expired``) and posts nothing; the case is
expired on the spot (its hold voided, ``risk.case.expired`` audited) through the sweep's
own expiry path, instead of staying open until the sweep comes. A rejection, which
releases the money as the expiry would, is still taken."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.kit.ids import format_id
from identity.identity_support import run_in_unit_of_work
from risk.cases.cases_support import held_movement, wallet_balances
from risk.cases.test_cases_api import Desk, desk

__all__ = ["desk"]


def _lapsed_case(desk: Desk, amount: int) -> str:
    _, case_id = held_movement(
        desk.database_url,
        desk.holder,
        amount=amount,
        hold_expires_at_ns=time.time_ns() - 1_000_000_000,
    )
    return format_id("rcs", case_id)


def _audited(desk: Desk, case_id: str) -> list[tuple[str, str | None]]:
    async def read(session: AsyncSession) -> list[tuple[str, str | None]]:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.actor_id)
            .where(AuditEntry.target == case_id)
            .order_by(AuditEntry.sequence)
        )
        return [(row.action, row.actor_id) for row in rows]

    return run_in_unit_of_work(desk.database_url, read)


def test_approving_a_case_past_its_hold_is_refused_and_expires_it_at_once(desk: Desk) -> None:
    case_id = _lapsed_case(desk, 5_000)
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers)
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["code"] == "case_hold_expired"
    shown = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert problem["hold_expires_at"] == shown["hold_expires_at"]
    # Expired now, not when the sweep comes: the hold voided, nothing posted.
    assert shown["state"] == "expired", shown
    assert shown["resolved_by"] is None
    assert desk.resolver.calls == 1
    balances = wallet_balances(desk.database_url, desk.holder)
    assert (balances["wallet_pending"], balances["payee_posted"]) == (0, 0)
    assert _audited(desk, case_id) == [("risk.case.expired", None)]
    again = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "case_not_open"
    assert desk.resolver.calls == 1


def test_rejecting_a_case_past_its_hold_still_releases_the_money(desk: Desk) -> None:
    case_id = _lapsed_case(desk, 7_000)
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/reject", headers=desk.analyst.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "rejected"
    balances = wallet_balances(desk.database_url, desk.holder)
    assert (balances["wallet_pending"], balances["payee_posted"]) == (0, 0)

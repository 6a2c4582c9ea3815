"""A case whose hold has lapsed can no longer be approved, even before the expiry sweep
reached it: the hold's end is the payer's promise that the money is released by then.
The approval is refused (409 ``case_hold_expired``) and moves nothing; a rejection, which
releases the money as the expiry would, is still taken."""

from __future__ import annotations

import time

from billfold.kit.ids import format_id
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


def test_approving_a_case_past_its_hold_is_refused_and_moves_nothing(desk: Desk) -> None:
    case_id = _lapsed_case(desk, 5_000)
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/approve", headers=desk.analyst.headers)
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["code"] == "case_hold_expired"
    shown = desk.client.get(f"/v1/risk/cases/{case_id}", headers=desk.analyst.headers).json()
    assert problem["hold_expires_at"] == shown["hold_expires_at"]
    assert shown["state"] == "open" and shown["resolution"] is None
    assert desk.resolver.calls == 0
    balances = wallet_balances(desk.database_url, desk.holder)
    assert (balances["wallet_pending"], balances["payee_posted"]) == (5_000, 0)


def test_rejecting_a_case_past_its_hold_still_releases_the_money(desk: Desk) -> None:
    case_id = _lapsed_case(desk, 7_000)
    answer = desk.client.post(f"/v1/risk/cases/{case_id}/reject", headers=desk.analyst.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "rejected"
    balances = wallet_balances(desk.database_url, desk.holder)
    assert (balances["wallet_pending"], balances["payee_posted"]) == (0, 0)

"""An approval refused ``case_hold_expired`` expires its case at once, on the expiry
path the sweep takes (``risk.cases.settlement``): when the sweep is expiring the same case
at that moment, exactly one of the two expires it. One ``risk.case.expired`` entry, one
resolution, one void of the hold. Forced on PostgreSQL's real connections: the sweep holds
its claim open while the refused approval tries to expire the case."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.cases import service, settlement
from billfold.risk.cases.models import RiskCaseResolution
from billfold.risk.models import RiskCase
from identity.identity_support import run_in_unit_of_work
from risk.cases.cases_support import held_movement, wallet_balances
from risk.cases.test_cases_api import Desk, desk

__all__ = ["desk"]

HELD_S = 1.0
"""How long the sweep keeps its claim open while the refused approval runs."""


def _books(desk: Desk, case_id: Any) -> tuple[str, str | None, list[str]]:
    async def read(session: AsyncSession) -> tuple[str, str | None, list[str]]:
        case = await session.get(RiskCase, case_id)
        assert case is not None
        resolution = await session.get(RiskCaseResolution, case_id)
        actions = await session.execute(
            select(AuditEntry.action)
            .where(AuditEntry.target == format_id("rcs", case_id))
            .order_by(AuditEntry.sequence)
        )
        state = None if resolution is None else resolution.state
        return case.state, state, list(actions.scalars())

    return run_in_unit_of_work(desk.database_url, read)


def test_a_refused_approval_and_the_sweep_expire_the_case_once(
    backend: str, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: test_case_hold_lapsed covers the order")
    _, case_id = held_movement(
        desk.database_url,
        desk.holder,
        amount=6_000,
        hold_expires_at_ns=time.time_ns() - 1_000_000_000,
    )
    unit_of_work: UnitOfWork = desk.client.app.state.unit_of_work  # type: ignore[attr-defined]
    original: Callable[..., Awaitable[bool]] = service.claim_expiry
    claimed, release = asyncio.Event(), asyncio.Event()
    claims: list[bool] = []

    async def claim_then_hold(*args: Any, **kwargs: Any) -> bool:
        first = not claimed.is_set()
        claimed.set()
        won = await original(*args, **kwargs)
        claims.append(won)
        if first:  # the sweep keeps its claim (and the case's row lock) a while
            await release.wait()
        return won

    monkeypatch.setattr(service, "claim_expiry", claim_then_hold)

    async def race() -> tuple[int, httpx.Response]:
        sweep = asyncio.ensure_future(
            settlement.expire_due(unit_of_work, desk.resolver, now_ns=time.time_ns(), limit=10)
        )
        await claimed.wait()
        transport = httpx.ASGITransport(app=desk.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            approval = asyncio.ensure_future(
                http.post(
                    f"/v1/risk/cases/{format_id('rcs', case_id)}/approve",
                    headers=desk.analyst.headers,
                )
            )
            await asyncio.sleep(HELD_S)  # the approval runs meanwhile (or waits)
            release.set()
            return await sweep, await approval

    swept, approval = desk.client.portal.call(race)  # type: ignore[attr-defined]
    assert approval.status_code == 409, approval.text
    assert approval.json()["code"] == "case_hold_expired"
    assert swept == 1
    assert claims == [True, False]  # the approval's expiry found the case claimed
    assert _books(desk, case_id) == ("expired", "settled", ["risk.case.expired"])
    assert desk.resolver.calls == 1
    balances = wallet_balances(desk.database_url, desk.holder)
    assert (balances["wallet_pending"], balances["payee_posted"]) == (0, 0)


def test_the_sweep_after_a_refused_approval_finds_nothing_to_expire(desk: Desk) -> None:
    _, case_id = held_movement(
        desk.database_url,
        desk.holder,
        amount=4_000,
        hold_expires_at_ns=time.time_ns() - 1_000_000_000,
    )
    answer = desk.client.post(
        f"/v1/risk/cases/{format_id('rcs', case_id)}/approve", headers=desk.analyst.headers
    )
    assert answer.status_code == 409, answer.text
    unit_of_work: UnitOfWork = desk.client.app.state.unit_of_work  # type: ignore[attr-defined]

    async def sweep() -> int:
        return await settlement.expire_due(
            unit_of_work, desk.resolver, now_ns=time.time_ns(), limit=10
        )

    assert desk.client.portal.call(sweep) == 0  # type: ignore[attr-defined]
    assert _books(desk, case_id) == ("expired", "settled", ["risk.case.expired"])
    assert desk.resolver.calls == 1

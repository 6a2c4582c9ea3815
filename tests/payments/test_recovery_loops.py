"""Leaving `running_recovery` lets a round in progress finish instead of cancelling it in
the middle of its transaction (whose rollback would then be cancelled too)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from billfold.flows import recovery_loops
from billfold.flows.recovery_loops import running_recovery

pytestmark = pytest.mark.anyio


async def test_leaving_lets_a_round_in_progress_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    inside, release = asyncio.Event(), asyncio.Event()
    finished: list[object] = []
    runtime = object()

    async def slow_round(payments: object, *, older_than_s: float) -> None:
        inside.set()
        await release.wait()
        finished.append(payments)

    monkeypatch.setattr(recovery_loops, "resume_interrupted", slow_round)

    async def run_and_leave() -> None:
        async with running_recovery(
            unit_of_work=cast(Any, None),
            ledger=cast(Any, None),
            payments=lambda: cast(Any, runtime),
            resolver=lambda: None,
            payments_interval_s=0.01,
            risk_cases_interval_s=60,
        ):
            await inside.wait()

    leaving = asyncio.create_task(run_and_leave())
    await asyncio.sleep(0.1)
    assert not leaving.done()  # waiting for the round, not cancelling it
    release.set()
    await asyncio.wait_for(leaving, 5)
    assert finished == [runtime]


async def test_leaving_while_idle_is_immediate() -> None:
    async def leave() -> None:
        async with running_recovery(
            unit_of_work=cast(Any, None),
            ledger=cast(Any, None),
            payments=lambda: cast(Any, None),
            resolver=lambda: None,
            payments_interval_s=60,
            risk_cases_interval_s=60,
        ):
            await asyncio.sleep(0)

    await asyncio.wait_for(leave(), 2)

"""The recovery loops of whatever process runs the scheduled work: the application's
embedded worker, or `billfold worker` when the servers run without one.

- payments a crash left between their steps are re-driven, exactly once each
  (``payments.flows.recovery.resume_interrupted``);
- review cases whose held money did not move yet are retried, open cases past their hold
  expire (the hold voided) and automated freezes a crash left pending are enforced
  (``flows.risk_cases.recover``);
- FX conversions a crash left between claiming their quote and marking it used are
  completed (their legs are in the ledger) or give the quote back
  (``fx.service.recover_claims``), on the payments loop's interval.

Every round is idempotent and safe in several processes at once; an error is logged and
the next round tries again (a loop that died would stop recovery for good).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog

from billfold.flows.risk_cases import recover as recover_risk_cases
from billfold.fx.service import recover_claims as recover_fx_claims
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.ledger.ledger import Ledger
from billfold.payments.flows.recovery import resume_interrupted
from billfold.payments.runtime import PaymentsRuntime
from billfold.risk.cases.resolver import HeldMovementResolver

__all__ = ["PAYMENTS_RESUME_AFTER_S", "STOP_GRACE_S", "pause", "running_recovery"]

PAYMENTS_RESUME_AFTER_S = 60.0
"""How old an interrupted P2P payment or refund must be before it is re-driven (a younger
one may still be in flight in another request)."""

STOP_GRACE_S = 15.0
"""How long the end of `running_recovery` waits for a round in progress to finish."""

log = structlog.get_logger(__name__)


async def pause(stopping: asyncio.Event, interval_s: float) -> bool:
    """Wait `interval_s` or until stopping; whether to run another round (a scheduled
    loop's wait, so that a stop ends it at once and never a round in progress)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), interval_s)
    return not stopping.is_set()


async def _resume_payments_forever(
    payments: Callable[[], PaymentsRuntime], *, interval_s: float, stopping: asyncio.Event
) -> None:
    while await pause(stopping, interval_s):
        try:
            await resume_interrupted(payments(), older_than_s=PAYMENTS_RESUME_AFTER_S)
        except Exception:  # logged and retried next round: the loop must not die
            log.exception("payments.resume_failed")


async def _recover_risk_cases_forever(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    resolver: Callable[[], HeldMovementResolver | None],
    *,
    interval_s: float,
    stopping: asyncio.Event,
) -> None:
    while await pause(stopping, interval_s):
        held = resolver()
        if held is None:  # no resolver installed (yet): nothing can move held money
            continue
        try:
            await recover_risk_cases(unit_of_work, ledger, held, clock=SystemClock())
        except Exception:  # logged and retried next round: the loop must not die
            log.exception("risk.cases.recovery_failed")


async def _recover_fx_claims_forever(
    unit_of_work: UnitOfWork, ledger: Ledger, *, interval_s: float, stopping: asyncio.Event
) -> None:
    while await pause(stopping, interval_s):
        try:
            await recover_fx_claims(unit_of_work, ledger, now_ns=SystemClock().now_ns())
        except Exception:  # logged and retried next round: the loop must not die
            log.exception("fx.claims_recovery_failed")


@asynccontextmanager
async def running_recovery(
    *,
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    payments: Callable[[], PaymentsRuntime],
    resolver: Callable[[], HeldMovementResolver | None],
    payments_interval_s: float,
    risk_cases_interval_s: float,
) -> AsyncIterator[None]:
    """The three loops, stopped when the block ends. `payments` and `resolver` are read at
    every round (the application may replace its runtime or resolver, a test its own)."""
    stopping = asyncio.Event()
    tasks = [
        asyncio.create_task(
            _resume_payments_forever(payments, interval_s=payments_interval_s, stopping=stopping)
        ),
        asyncio.create_task(
            _recover_risk_cases_forever(
                unit_of_work, ledger, resolver, interval_s=risk_cases_interval_s, stopping=stopping
            )
        ),
        asyncio.create_task(
            _recover_fx_claims_forever(
                unit_of_work, ledger, interval_s=payments_interval_s, stopping=stopping
            )
        ),
    ]
    try:
        yield
    finally:
        # A round in progress finishes (cancelled, its transaction's rollback could be
        # cancelled too); one still running after the grace period is cancelled.
        stopping.set()
        await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

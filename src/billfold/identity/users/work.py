"""Running an end-user operation in a unit of work so that its refusals still leave a trace.

A refused sign-in must count towards the account lock, a reused refresh token must revoke
its family and every refusal must reach the security event log, yet the request's own unit
of work rolls back when the error propagates. :func:`run_recording_failures` therefore
commits the error's aftermath in a second, separate unit of work, then re-raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.users.errors import aftermath_of
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import BillfoldError

__all__ = ["record_aftermath", "run_attempt", "run_recording_failures"]

T = TypeVar("T")


async def record_aftermath(unit_of_work: UnitOfWork, error: BillfoldError) -> None:
    """Commit ``error``'s aftermath, if it has one, in a unit of work of its own.

    For other domains that call ``verify_step_up`` inside their own unit of work: after it
    rolled back, pass the ``StepUpRejected`` here so the failure is recorded.
    """
    aftermath = aftermath_of(error)
    if aftermath is None:
        return
    async with unit_of_work.begin() as session:
        await aftermath(session)


async def run_recording_failures(
    unit_of_work: UnitOfWork, action: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """``action`` in one unit of work; if it raises, its aftermath in another, then raise."""
    try:
        async with unit_of_work.begin() as session:
            return await action(session)
    except BillfoldError as error:
        await record_aftermath(unit_of_work, error)
        raise


async def run_attempt(
    unit_of_work: UnitOfWork,
    *,
    reserve: Callable[[AsyncSession], Awaitable[None]],
    check: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """A guess at a secret: ``reserve`` counts it and commits, then ``check`` checks it in
    a unit of work of its own (both through :func:`run_recording_failures`). Committing
    the count first is what bounds concurrent guesses (see ``lockout``)."""
    await run_recording_failures(unit_of_work, reserve)
    return await run_recording_failures(unit_of_work, check)

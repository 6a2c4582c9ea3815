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

from billfold.identity.users.errors import InvalidCredentials, aftermath_of
from billfold.identity.users.lockout import refund_attempt
from billfold.identity.users.reauthentication import reserve_reauthentication
from billfold.identity.users.types import UserPrincipal
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import BillfoldError

__all__ = ["record_aftermath", "run_attempt", "run_reauthenticated", "run_recording_failures"]

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


async def run_reauthenticated(
    unit_of_work: UnitOfWork,
    *,
    principal: UserPrincipal,
    now_ns: int,
    action: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """An operation that asks for the password again (``reauthentication``): the check is
    counted against the lock and committed first, then ``action`` runs in a unit of work
    of its own and takes the count back if the password was right. If ``action`` is
    refused for any other reason than the password (a wrong enrolment code, a rejected
    passkey), its rollback undid that: the count is taken back after it, in a unit of work
    of its own, as a right password (or one never checked) is no failed attempt."""
    await run_recording_failures(
        unit_of_work,
        lambda session: reserve_reauthentication(session, principal=principal, now_ns=now_ns),
    )
    try:
        return await run_recording_failures(unit_of_work, action)
    except Exception as error:
        if not isinstance(error, InvalidCredentials):
            async with unit_of_work.begin() as session:
                await refund_attempt(session, user_id=principal.user_id)
        raise

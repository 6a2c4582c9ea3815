"""Asking a signed-in user for their password again.

An access token alone must not add or replace an authentication element (a bound device, a
TOTP app, a passkey, recovery codes): whoever stole one could then pass strong customer
authentication (PSD2 RTS articles 22-24). Those operations call :func:`reauthenticate`
first; a wrong password is refused like a wrong sign-in and counts towards the same lock.
As at sign-in, the check is counted before it is made (:func:`reserve_reauthentication`,
committed first), so concurrent guesses cannot outrun the lock: run these operations
through ``work.run_reauthenticated``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.passwords import passwords_for
from billfold.identity.users.config import UsersConfig
from billfold.identity.users.errors import InvalidCredentials, UserNotAuthenticated, with_aftermath
from billfold.identity.users.lockout import (
    failure_aftermath,
    is_locked,
    refund_attempt,
    reserve_attempt,
)
from billfold.identity.users.models import EndUser
from billfold.identity.users.repository import UserRepository
from billfold.identity.users.types import UserPrincipal

__all__ = ["reauthenticate", "reserve_reauthentication"]


async def reserve_reauthentication(
    session: AsyncSession, *, principal: UserPrincipal, now_ns: int
) -> None:
    """Count the password check against the account lock before it is made; commit this
    before the operation that calls :func:`reauthenticate`. ``InvalidCredentials`` when
    the account has no attempt left (locked, or its remaining attempts are in flight)."""
    users = UserRepository(session)
    user = await users.get(principal.user_id)
    if user is None or not await users.is_signable(user.id):
        raise UserNotAuthenticated()  # disabled or erased since the access token was checked
    if not await reserve_attempt(session, user_id=user.id, now_ns=now_ns):
        aftermath = failure_aftermath(
            user, now_ns=now_ns, reason="locked", stage="reauthentication", while_locked=True
        )
        raise with_aftermath(InvalidCredentials(), aftermath)


async def reauthenticate(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> EndUser:
    """The signed-in user, once ``password`` is theirs and the account is not locked;
    otherwise ``InvalidCredentials``, with the failure recorded as its aftermath (stage
    ``reauthentication``), which locks the account if that was the last attempt. The
    attempt was counted by :func:`reserve_reauthentication`; a right password takes it
    back (with this unit of work; ``work.run_reauthenticated`` takes it back if the
    operation fails afterwards). Call it first in the operation's unit of work: it locks
    the user's row until the operation commits, and refuses with ``UserNotAuthenticated``
    a user no longer active (disabled, erased, their tenant suspended)."""
    # Locked first, and read as committed now: an erasure or a disabling committed since
    # the access token was checked refuses the operation, and one that comes later waits
    # for it (then renames, revokes or deletes what it added).
    user = await UserRepository(session).lock_signable(principal.user_id)
    if user is None:
        raise UserNotAuthenticated()
    matches = await passwords_for(config.password_parameters).verify(user.password_hash, password)
    locked = is_locked(user, now_ns=now_ns)
    if locked or not matches:
        raise with_aftermath(
            InvalidCredentials(),
            failure_aftermath(
                user,
                now_ns=now_ns,
                reason="locked" if locked else "wrong_password",
                stage="reauthentication",
                while_locked=locked,
                reserved=True,
            ),
        )
    await refund_attempt(session, user_id=user.id)
    return user

"""API-key authentication: identity's half of the contract in ``billfold.kit.auth``.

``authenticate`` turns ``Authorization: Bearer <API key>`` (and nothing else: no query
parameter, no cookie) into a :class:`Principal`. The application installs it as the
authenticator behind ``require_scopes(...)``, which routes declare with the scopes they
need; both, and ``Principal``, are re-exported here. Every failure to authenticate is the
same 401 problem, whatever its cause.
"""

from __future__ import annotations

from fastapi import Request

from billfold.identity.errors import NotAuthenticated
from billfold.identity.service import record_api_key_use, verify_api_key
from billfold.identity.types import Scope
from billfold.kit.auth import Mode, Principal, require_scopes
from billfold.kit.bearer import bearer_token
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation

__all__ = [
    "Mode",
    "Principal",
    "Scope",
    "authenticate",
    "get_unit_of_work",
    "require_scopes",
]

_clock: Clock = SystemClock()


def get_unit_of_work(request: Request) -> UnitOfWork:
    """The application's unit of work, opened by the lifespan in ``billfold.app``."""
    unit_of_work = getattr(request.app.state, "unit_of_work", None)
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


def _bearer_token(request: Request) -> str | None:
    return bearer_token(request.headers.getlist("authorization"))


async def authenticate(request: Request) -> Principal:
    """The caller proven by its API key, or a 401 ``unauthorized`` problem."""
    presented = _bearer_token(request)
    if presented is None:
        raise NotAuthenticated()
    unit_of_work = get_unit_of_work(request)
    now_ns = _clock.now_ns()
    # A read: on SQLite, checking a key must not queue behind (or block) the one writer.
    async with unit_of_work.read() as session:
        verified = await verify_api_key(session, presented=presented, now_ns=now_ns)
    if verified.last_use_due:
        # A transaction of its own that starts with the write: on SQLite, upgrading a read
        # transaction to a write can fail at once if another writer went first.
        async with unit_of_work.begin() as session:
            await record_api_key_use(
                session, api_key_id=verified.principal.api_key_id, now_ns=now_ns
            )
    return verified.principal

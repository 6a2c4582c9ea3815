"""The authentication dependencies every non-public route declares.

``authenticate`` turns ``Authorization: Bearer <API key>`` (and nothing else: no query
parameter, no cookie) into a :class:`Principal`; ``require_scopes(...)`` adds the scopes a
route needs. Every failure to authenticate is the same 401 problem, whatever its cause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billfold.identity.errors import InsufficientScope, NotAuthenticated
from billfold.identity.service import record_api_key_use, verify_api_key
from billfold.identity.types import Mode, Principal, Scope
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

# Declared so OpenAPI (and /docs) show the scheme; the header itself is parsed below, more
# strictly than HTTPBearer does (exactly one Authorization header).
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key in the Authorization header: `Bearer bf_test_…` or `bf_live_…`.",
)
_clock: Clock = SystemClock()


def get_unit_of_work(request: Request) -> UnitOfWork:
    """The application's unit of work, opened by the lifespan in ``billfold.app``."""
    unit_of_work = getattr(request.app.state, "unit_of_work", None)
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


def _bearer_token(request: Request) -> str | None:
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    # RFC 9110: the scheme is case-insensitive; the token is parsed strictly later.
    return token if scheme.lower() == "bearer" else None


async def authenticate(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    """The caller proven by its API key, or a 401 ``unauthorized`` problem."""
    presented = _bearer_token(request)
    if presented is None:
        raise NotAuthenticated()
    unit_of_work = get_unit_of_work(request)
    now_ns = _clock.now_ns()
    async with unit_of_work.begin() as session:
        verified = await verify_api_key(session, presented=presented, now_ns=now_ns)
    if verified.last_use_due:
        # A transaction of its own that starts with the write: on SQLite, upgrading a read
        # transaction to a write can fail at once if another writer went first.
        async with unit_of_work.begin() as session:
            await record_api_key_use(
                session, api_key_id=verified.principal.api_key_id, now_ns=now_ns
            )
    return verified.principal


def require_scopes(*scopes: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that authenticates and then requires every one of ``scopes``."""
    required = frozenset(Scope(scope) for scope in scopes)  # a typo fails at import time

    async def authorized(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        missing = required - principal.scopes
        if missing:
            names = sorted(scope.value for scope in missing)
            raise InsufficientScope(
                f"This API key lacks the scopes: {', '.join(names)}.", required_scopes=names
            )
        return principal

    return authorized

"""Operator-session authentication and the permission checks routes declare.

``Authorization: Bearer bfo_…`` (exactly one header; no cookie, no query parameter) is
turned into an :class:`OperatorPrincipal`, once per request. Routes then require
permissions, never roles (``require_permission(Permission.OPERATORS_MANAGE)``).

An operator still holding a one-time password may only read itself, change the password
and sign out: every other route answers 403 ``password_change_required``.

Creating operators is the one route that also takes an API key: a *live* key with
``tenant:admin``, the tenant's root credential, is how the first administrator is made over
HTTP (a test key is the less guarded sandbox credential, so it may not create the people
who approve live money movements). The command line makes them too.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators.errors import (
    OperatorNotAuthenticated,
    PasswordChangeRequired,
    PermissionDenied,
)
from billfold.identity.operators.executors import ApprovalExecutors, default_executors
from billfold.identity.operators.permissions import Permission
from billfold.identity.operators.service import verify_session
from billfold.identity.operators.tokens import SESSION_TOKEN_PREFIX
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, Actor, OperatorPrincipal
from billfold.identity.security_events import ActorType
from billfold.identity.types import Mode, Scope
from billfold.kit.auth import InsufficientScope, admit_request, count_request
from billfold.kit.bearer import bearer_token
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.errors import BillfoldError
from billfold.kit.http.logging import bind_actor
from billfold.kit.ids import format_id

__all__ = [
    "OPERATOR_SESSION_SCHEME",
    "ApiKeyCredentials",
    "OperatorCredentials",
    "OperatorManager",
    "authenticate_operator",
    "get_approval_executors",
    "operator_idempotency_scope",
    "operator_manager",
    "presented_token",
    "require_permission",
    "signed_in",
    "signed_in_pending_password_change",
]

OPERATOR_SESSION_SCHEME = "OperatorSession"
_STATE_PRINCIPAL = "operator_principal"
_operator_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=OPERATOR_SESSION_SCHEME,
    description="An operator session token in the Authorization header: `Bearer bfo_…`"
    " (from POST /v1/operators/login).",
)
_api_key_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key in the Authorization header: `Bearer bf_test_…` or `bf_live_…`.",
)
_clock: Clock = SystemClock()
OperatorCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_bearer)]
"""A dependency that reads nothing the route uses: it declares the operator-session scheme in
the route's OpenAPI `security`."""
ApiKeyCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key_bearer)]
"""The same for the API-key scheme, on routes an operator or an API key may call: with
both, the OpenAPI document lists them as alternatives."""


def presented_token(request: Request) -> str | None:
    """The bearer token of a request with exactly one Authorization header, else None."""
    return bearer_token(request.headers.getlist("authorization"))


async def authenticate_operator(
    request: Request, response: Response, _credentials: OperatorCredentials = None
) -> OperatorPrincipal:
    """The signed-in operator, or a 401 ``unauthorized`` problem (the same for every cause);
    each request counted against the operator's rate limit (429 beyond it)."""
    principal = await _verified_operator(request)
    await count_request(request, key=f"operator:{principal.operator_id.hex}", response=response)
    return principal


async def operator_idempotency_scope(request: Request) -> str | None:
    """For the application's idempotency layer: ``operator:<id>`` for a request carrying a
    valid operator session, else None (the route then answers 401)."""
    try:
        principal = await _verified_operator(request)
    except OperatorNotAuthenticated:
        return None
    return f"operator:{principal.operator_id.hex}"


async def _verified_operator(request: Request) -> OperatorPrincipal:
    cached = getattr(request.state, _STATE_PRINCIPAL, None)
    if isinstance(cached, OperatorPrincipal):
        return cached
    token = presented_token(request)
    if token is None or not token.startswith(SESSION_TOKEN_PREFIX):
        raise OperatorNotAuthenticated()
    async with get_unit_of_work(request).read() as session:
        principal = await verify_session(session, token=token, now_ns=_clock.now_ns())
    setattr(request.state, _STATE_PRINCIPAL, principal)
    bind_actor(
        tenant_id=format_id("ten", principal.tenant_id),
        actor=format_id(OPERATOR_ID_PREFIX, principal.operator_id),
    )
    return principal


async def signed_in_pending_password_change(
    principal: Annotated[OperatorPrincipal, Depends(authenticate_operator)],
) -> OperatorPrincipal:
    """Any signed-in operator, even one who must still change a one-time password."""
    return principal


async def signed_in(
    principal: Annotated[OperatorPrincipal, Depends(authenticate_operator)],
) -> OperatorPrincipal:
    """A signed-in operator whose password is its own."""
    if principal.password_change_required:
        raise PasswordChangeRequired(
            "Change the one-time password (POST /v1/operators/me/password) first."
        )
    return principal


def require_permission(
    *permissions: Permission,
) -> Callable[[OperatorPrincipal], Awaitable[OperatorPrincipal]]:
    """A dependency: a signed-in operator holding every one of ``permissions``."""
    required = frozenset(Permission(permission) for permission in permissions)

    async def permitted(
        principal: Annotated[OperatorPrincipal, Depends(signed_in)],
    ) -> OperatorPrincipal:
        missing = sorted(permission.value for permission in required - principal.permissions)
        if missing:
            raise PermissionDenied(
                f"This needs the permission {', '.join(missing)}.",
                required_permission=missing[0],
                required_permissions=list(missing),
            )
        return principal

    return permitted


@dataclass(frozen=True, slots=True)
class OperatorManager:
    """Who may create operators: an operator with operators.manage, or a live tenant:admin
    API key. ``principal`` is the operator, None for a key."""

    tenant_id: uuid.UUID
    actor: Actor
    principal: OperatorPrincipal | None


async def operator_manager(
    request: Request,
    response: Response,
    _operator: OperatorCredentials = None,
    _api_key: ApiKeyCredentials = None,
) -> OperatorManager:
    """An operator session with operators.manage, or a live API key with tenant:admin."""
    token = presented_token(request)
    if token is not None and token.startswith(SESSION_TOKEN_PREFIX):
        principal = await signed_in(await authenticate_operator(request, response))
        await require_permission(Permission.OPERATORS_MANAGE)(principal)
        return OperatorManager(
            tenant_id=principal.tenant_id, actor=principal.actor, principal=principal
        )
    try:
        key = await admit_request(request)
    except BillfoldError as error:
        if error.status == 401:
            raise OperatorNotAuthenticated() from None
        raise
    if Scope.TENANT_ADMIN.value not in {str(scope) for scope in key.scopes}:
        raise InsufficientScope(
            "This API key lacks the scopes: tenant:admin.", required_scopes=["tenant:admin"]
        )
    if key.mode != Mode.LIVE:
        raise PermissionDenied(
            "Operators are created with a live tenant:admin key (or by an operator).",
            required_permission=Permission.OPERATORS_MANAGE.value,
        )
    actor = Actor(actor_type=ActorType.API_KEY, actor_id=format_id("key", key.api_key_id))
    return OperatorManager(tenant_id=key.tenant_id, actor=actor, principal=None)


def get_approval_executors(request: Request) -> ApprovalExecutors:
    """The executors the application installed (``app.state.approval_executors``), or the
    ones identity has on its own (no ledger actions) when it installed none."""
    installed = getattr(request.app.state, "approval_executors", None)
    if isinstance(installed, ApprovalExecutors):
        return installed
    return default_executors()

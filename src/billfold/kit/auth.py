"""The authentication contract every domain's routes depend on, with no domain knowledge.

A domain router declares ``Depends(require_scopes("ledger:read"))`` and receives a
:class:`Principal`. How a caller is proven (API keys, today) is identity's business: the
application installs an :data:`Authenticator` (:func:`install_auth`) and a rate limit
policy (:func:`install_rate_limit`) on ``app.state``, so a domain such as the ledger can
have routes while importing only ``billfold.kit``.

Per request, once (:func:`admit_request`, whose result is kept on ``request.state`` so the
idempotency layer and the route share it): the caller is authenticated, ``tenant`` and
``actor`` are bound into the logs, and the request is counted against the credential's rate
limit (429 with ``Retry-After``). Then each route checks its scopes (403
``insufficient_scope``).

**Test and live money never mix.** :attr:`Principal.ledger_tenant_id` is the tenant a
domain uses for the ledger and other mode-sensitive data: a UUIDv5 of ``(tenant, mode)``,
so a test-mode key can neither see nor move live-mode money, and the ledger needs to know
nothing about modes.
"""

# No `from __future__ import annotations` here: FastAPI reads the dependency's annotations
# at runtime, and its names are imported inside `require_scopes` so that importing this
# module (as identity's types and the CLI do) does not pay for importing the web framework.

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from billfold.kit.errors import BillfoldError, Forbidden, InvariantViolation, JSONValue
from billfold.kit.ids import format_id

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.security import HTTPBearer
    from starlette.requests import Request
    from starlette.responses import Response

    from billfold.kit.http.rate_limit import Decision, RateLimiter

__all__ = [
    "API_KEY_ID_PREFIX",
    "LEDGER_TENANT_NAMESPACE",
    "SCOPE_LENGTH_MAX",
    "TENANT_ID_PREFIX",
    "Authenticator",
    "CredentialRateLimit",
    "InsufficientScope",
    "Mode",
    "Principal",
    "admit_request",
    "count_request",
    "counted_rate_limit_fields",
    "declared_scopes",
    "install_auth",
    "install_rate_limit",
    "require_scopes",
    "still_admitted",
]

LEDGER_TENANT_NAMESPACE = uuid.UUID("5b1f0c8e-7d2a-4c3b-9e6f-0a4d8b2c1e7f")
"""Fixed forever: changing it would orphan every ledger account (they are keyed by it)."""
TENANT_ID_PREFIX = "ten"
API_KEY_ID_PREFIX = "key"
SCOPE_LENGTH_MAX = 64
_SCOPE_NAME = re.compile(r"[a-z]+:[a-z]+", re.ASCII)
_STATE_PRINCIPAL = "principal"
_STATE_DECISION = "rate_limit_decision"

_declared: set[str] = set()
_bearer_scheme: "HTTPBearer | None" = None


class Mode(StrEnum):
    """Whether a credential touches real money (``live``) or the sandbox (``test``)."""

    TEST = "test"
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the key that proved it, its mode and its scopes."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    mode: Mode
    scopes: frozenset[str]
    ledger_tenant_id: uuid.UUID = field(init=False, repr=False, compare=False)
    """The tenant id under which this caller's ledger data lives: one per (tenant, mode),
    so test-mode and live-mode money can never meet in one transfer or query. Computed
    once: concurrent requests share one principal, and each used to hash it again."""

    def __post_init__(self) -> None:
        ledger_tenant_id = uuid.uuid5(
            LEDGER_TENANT_NAMESPACE, f"{self.tenant_id}:{self.mode.value}"
        )
        object.__setattr__(self, "ledger_tenant_id", ledger_tenant_id)


Authenticator: TypeAlias = Callable[["Request"], Awaitable[Principal]]
"""Proves the caller of a request or raises a 401 error; identity provides the real one."""


@dataclass(frozen=True, slots=True)
class CredentialRateLimit:
    """At most `limit` requests per `window_s` seconds per API key."""

    limiter: "RateLimiter"
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        from billfold.kit.http.rate_limit import validate_rate_limit

        validate_rate_limit("policy", limit=self.limit, window_s=self.window_s)


class InsufficientScope(Forbidden):
    """Raised with the extension ``required_scopes``: the scopes the key lacks."""

    code = "insufficient_scope"
    title = "Insufficient scope"

    def response_headers(self) -> dict[str, str]:
        # RFC 6750 section 3.1: the challenge names the error and the scopes that would do.
        required = self.extensions.get("required_scopes")
        scopes = " ".join(map(str, required)) if isinstance(required, list) else ""
        challenge = f'Bearer realm="billfold", error="insufficient_scope", scope="{scopes}"'
        return {"WWW-Authenticate": challenge}


def install_auth(app: "FastAPI", *, authenticator: Authenticator) -> None:
    """Make `authenticator` prove the callers of every `require_scopes` route of `app`."""
    app.state.authenticator = authenticator


def install_rate_limit(
    app: "FastAPI", policy: CredentialRateLimit, *, sign_in: CredentialRateLimit | None = None
) -> None:
    """Count every admitted request of `app` against `policy`, per API key (and per end
    user and operator, see :func:`count_request`); and, when `sign_in` is given, every
    request to a sign-in route against it, per client address (``throttle_sign_in`` in
    ``billfold.kit.http.rate_limit``)."""
    app.state.credential_rate_limit = policy
    app.state.sign_in_rate_limit = sign_in


async def count_request(request: "Request", *, key: str, response: "Response | None") -> None:
    """Count one request of a signed-in caller (``user:…``, ``operator:…``) against the
    application's credential policy: 429 beyond it, else ``RateLimit-*`` headers."""
    from billfold.kit.http.rate_limit import enforce_rate_limit

    policy = getattr(request.app.state, "credential_rate_limit", None)
    if isinstance(policy, CredentialRateLimit):
        decision = await enforce_rate_limit(
            policy.limiter, key=key, limit=policy.limit, window_s=policy.window_s, response=response
        )
        setattr(request.state, _STATE_DECISION, decision)


def counted_rate_limit_fields(scope: Mapping[str, Any]) -> dict[str, str]:
    """The `RateLimit` fields of the check that counted the ASGI request `scope`, for the
    answers its route does not make (a problem raised past the count, an idempotent replay):
    every counted response says where the caller stands. Empty when nothing counted it."""
    state = scope.get("state")
    decision = state.get(_STATE_DECISION) if isinstance(state, dict) else None
    if decision is None:
        return {}
    from billfold.kit.http.rate_limit import Decision, rate_limit_headers

    return rate_limit_headers(decision) if isinstance(decision, Decision) else {}


def _authenticator(request: "Request") -> Authenticator:
    authenticator = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise InvariantViolation("the application installs an authenticator (install_auth)")
    return authenticator  # type: ignore[no-any-return]


class _Coalescer:
    """Concurrent authentications of the same credential share one: a busy API key (a
    platform's backend sends most requests with one) costs one database read per burst
    instead of one per request. Nothing is cached: a request that arrives after the shared
    check finished starts a new one, so a revoked key is refused as soon as it would be."""

    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Task[Principal]] = {}

    async def authenticate(
        self, request: "Request", *, credential: str, authenticator: Authenticator
    ) -> Principal:
        task = self._in_flight.get(credential)
        if task is None:
            # A task of its own, so one caller going away does not cancel the others' check.
            task = asyncio.ensure_future(authenticator(request))
            self._in_flight[credential] = task
            task.add_done_callback(lambda _: self._in_flight.pop(credential, None))
            task.add_done_callback(_retrieve_outcome)
        return await asyncio.shield(task)


def _retrieve_outcome(task: "asyncio.Task[Principal]") -> None:
    # Every waiter may have been cancelled; the outcome must not be reported as lost.
    if not task.cancelled():
        task.exception()


def _coalescer(request: "Request") -> _Coalescer:
    coalescer = getattr(request.app.state, "auth_coalescer", None)
    if not isinstance(coalescer, _Coalescer):
        coalescer = request.app.state.auth_coalescer = _Coalescer()
    return coalescer


async def admit_request(request: "Request") -> Principal:
    """The request's caller, admitted once per request: authenticated, named in the logs
    and counted against its credential's rate limit (429 beyond it). Later calls for the
    same request (the idempotency layer's, then the route's) return the same principal."""
    from billfold.kit.http.logging import bind_actor

    cached = getattr(request.state, _STATE_PRINCIPAL, None)
    if isinstance(cached, Principal):
        return cached
    credential = "\n".join(request.headers.getlist("authorization"))
    principal = await _coalescer(request).authenticate(
        request, credential=credential, authenticator=_authenticator(request)
    )
    setattr(request.state, _STATE_PRINCIPAL, principal)
    bind_actor(
        tenant_id=format_id(TENANT_ID_PREFIX, principal.tenant_id),
        actor=format_id(API_KEY_ID_PREFIX, principal.api_key_id),
    )
    setattr(request.state, _STATE_DECISION, await _count_request(request, principal))
    return principal


async def still_admitted(request: "Request", principal: Principal) -> bool:
    """Whether `request`'s credential still proves `principal`, checked afresh (not the
    request's own admission, which is kept for it): for a response that lasts (a live
    stream), which must end once its key is revoked, expires or its tenant is suspended,
    as the next request with it would be refused."""
    credential = "\n".join(request.headers.getlist("authorization"))
    try:
        current = await _coalescer(request).authenticate(
            request, credential=credential, authenticator=_authenticator(request)
        )
    except BillfoldError:
        return False
    return current == principal


async def _count_request(request: "Request", principal: Principal) -> "Decision | None":
    from billfold.kit.http.rate_limit import RateLimitExceeded, check_policy

    policy = getattr(request.app.state, "credential_rate_limit", None)
    if not isinstance(policy, CredentialRateLimit):
        return None  # an application without a policy (a test's) limits nothing
    decision = await check_policy(
        policy.limiter,
        f"credential:{principal.api_key_id.hex}",
        limit=policy.limit,
        window_s=policy.window_s,
    )
    if not decision.allowed:
        raise RateLimitExceeded(decision)
    return decision


def _checked_scope(scope: str) -> str:
    if len(scope) > SCOPE_LENGTH_MAX or not _SCOPE_NAME.fullmatch(scope):
        raise ValueError(f"a scope is 'domain:permission' in lowercase, got {scope!r}")
    return str(scope)


def declared_scopes() -> frozenset[str]:
    """Every scope some route requires, so a test can check each one can be granted."""
    return frozenset(_declared)


def _bearer() -> "HTTPBearer":
    """Declared on every guarded route so OpenAPI (and /docs) show the scheme; the header
    itself is parsed by the authenticator, more strictly than HTTPBearer does."""
    global _bearer_scheme
    if _bearer_scheme is None:
        from fastapi.security import HTTPBearer

        _bearer_scheme = HTTPBearer(
            auto_error=False,
            scheme_name="ApiKey",
            description="An API key in the Authorization header: `Bearer bf_test_…`"
            " or `bf_live_…`.",
        )
    return _bearer_scheme


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates, rate-limits, then requires every one of `scopes`."""
    from fastapi import Depends, Request, Response
    from fastapi.security import HTTPAuthorizationCredentials

    from billfold.kit.http.rate_limit import rate_limit_headers

    required = frozenset(_checked_scope(scope) for scope in scopes)  # refused at import time
    _declared.update(required)
    bearer = _bearer()

    async def authorized(
        request: Request,
        response: Response,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
    ) -> Principal:
        principal = await admit_request(request)
        decision = getattr(request.state, _STATE_DECISION, None)
        if decision is not None:
            response.headers.update(rate_limit_headers(decision))
        missing = required - principal.scopes
        if missing:
            names: list[JSONValue] = [*sorted(missing)]
            raise InsufficientScope(
                f"This API key lacks the scopes: {', '.join(sorted(missing))}.",
                required_scopes=names,
            )
        return principal

    return authorized

"""The end user's authentication dependencies, separate from API keys by construction.

``authenticate_user`` accepts exactly one ``Authorization: Bearer bfu_at_…`` header and
nothing else: an API key (``bf_test_…``) is no access token and fails here, as an access
token fails where an API key is required. Every failure is the same 401 problem.

``device_signed`` additionally requires the request to be signed by one of the user's
bound devices (headers and signed bytes are defined in ``signatures``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billfold.identity.auth import get_unit_of_work
from billfold.identity.users.config import get_users_config
from billfold.identity.users.devices import SignedRequest, verify_signed_request
from billfold.identity.users.errors import DeviceSignatureInvalid, UserNotAuthenticated
from billfold.identity.users.sessions import authenticate_access_token
from billfold.identity.users.signatures import (
    DEVICE_ID_HEADER,
    DEVICE_NONCE_HEADER,
    DEVICE_SIGNATURE_HEADER,
    DEVICE_TIMESTAMP_HEADER,
)
from billfold.identity.users.tokens import USER_TOKEN_PREFIX, TokenKind
from billfold.identity.users.types import USER_ID_PREFIX, UserPrincipal
from billfold.identity.users.work import run_recording_failures
from billfold.kit.auth import count_request
from billfold.kit.bearer import bearer_token
from billfold.kit.http.logging import bind_actor
from billfold.kit.ids import format_id

__all__ = ["VerifiedDevice", "authenticate_user", "device_signed", "user_idempotency_scope"]

_HEADER_LENGTH_MAX = 256
_user_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="UserAccessToken",
    description="An end user's access token in the Authorization header: `Bearer bfu_at_…`.",
)


@dataclass(frozen=True, slots=True)
class VerifiedDevice:
    """The user's device whose signature over this request verified."""

    principal: UserPrincipal
    device_id: str


def _bearer_token(request: Request) -> str | None:
    return bearer_token(request.headers.getlist("authorization"))


async def authenticate_user(
    request: Request,
    response: Response,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)] = None,
) -> UserPrincipal:
    """The end user proven by an access token, or a 401 ``unauthorized`` problem."""
    presented = _bearer_token(request)
    if presented is None:
        raise UserNotAuthenticated()
    config = get_users_config(request)
    async with get_unit_of_work(request).read() as session:
        principal = await authenticate_access_token(
            session, access_token=presented, now_ns=config.clock.now_ns()
        )
    bind_actor(
        tenant_id=format_id("ten", principal.tenant_id),
        actor=format_id(USER_ID_PREFIX, principal.user_id),
    )
    await count_request(request, key=f"user:{principal.user_id.hex}", response=response)
    return principal


async def user_idempotency_scope(request: Request) -> str | None:
    """For the application's idempotency layer: ``user:<id>`` for a request carrying a
    valid access token, else None. Scoped per user rather than per token, because access
    tokens rotate every few minutes and a retry must still find its key."""
    presented = _bearer_token(request)
    if presented is None or not presented.startswith(f"{USER_TOKEN_PREFIX}{TokenKind.ACCESS}_"):
        return None
    config = get_users_config(request)
    try:
        async with get_unit_of_work(request).read() as session:
            principal = await authenticate_access_token(
                session, access_token=presented, now_ns=config.clock.now_ns()
            )
    except UserNotAuthenticated:
        return None
    return f"user:{principal.user_id.hex}"


def _one_header(request: Request, name: str) -> str:
    values = request.headers.getlist(name)
    if len(values) != 1 or len(values[0]) > _HEADER_LENGTH_MAX:
        raise DeviceSignatureInvalid(f"The request needs exactly one {name} header.")
    return values[0]


def _target(request: Request) -> str:
    """The path and query exactly as the client sent them."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def device_signed(
    request: Request, principal: Annotated[UserPrincipal, Depends(authenticate_user)]
) -> VerifiedDevice:
    """The access token's user, and one of their devices that signed this very request."""
    signed = SignedRequest(
        device_id=_one_header(request, DEVICE_ID_HEADER),
        timestamp=_one_header(request, DEVICE_TIMESTAMP_HEADER),
        nonce=_one_header(request, DEVICE_NONCE_HEADER),
        signature=_one_header(request, DEVICE_SIGNATURE_HEADER),
        method=request.method,
        target=_target(request),
        body=await request.body(),  # already bounded by the application's body size limit
    )
    config = get_users_config(request)
    now_ns = config.clock.now_ns()
    await run_recording_failures(  # a refusal is recorded as a security event
        get_unit_of_work(request),
        lambda session: verify_signed_request(
            session, user_id=principal.user_id, signed=signed, now_ns=now_ns
        ),
    )
    return VerifiedDevice(principal=principal, device_id=signed.device_id)

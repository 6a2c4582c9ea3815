"""The request id: accepted from the client when well formed, generated otherwise, echoed on
every response (errors and 404s included) and bound into the structlog context.

A client (or a proxy in front of Billfold) may send `X-Request-Id` so one id follows a
request across systems; an id that is too long or carries other characters is replaced,
because it ends up in logs and headers where it must not inject anything.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.kit.errors import BillfoldError
from billfold.kit.http.problems import send_problem
from billfold.kit.ids import new_id

__all__ = [
    "REQUEST_ID_HEADER",
    "REQUEST_ID_LENGTH_MAX",
    "RequestIdMiddleware",
    "choose_request_id",
    "current_request_id",
]

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_LENGTH_MAX = 128

_HEADER_NAME = REQUEST_ID_HEADER.lower().encode("ascii")
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % REQUEST_ID_LENGTH_MAX, re.ASCII)
_current: ContextVar[str | None] = ContextVar("billfold_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return _current.get()


def choose_request_id(incoming: bytes | None) -> str:
    """`incoming` when it is 1-128 characters of `[A-Za-z0-9._-]`, else a new UUIDv7 hex."""
    if incoming is not None and _WELL_FORMED.fullmatch(incoming):
        return incoming.decode("ascii")
    return new_id().hex


def _incoming(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == _HEADER_NAME:
            return bytes(value)
    return None


class RequestIdMiddleware:
    """Pure ASGI middleware (no `BaseHTTPMiddleware`, whose task breaks context variables)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(_incoming(scope))
        # Handlers read it as `request.state.request_id`.
        scope.setdefault("state", {})["request_id"] = request_id
        token = _current.set(request_id)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._serve(request_id, scope, receive, send)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            _current.reset(token)

    async def _serve(self, request_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette renders an unhandled error in its outermost middleware, outside this
            # one, where the id could not be added; so answer here and let it re-raise (it
            # sends nothing once a response has started) so the server logs the traceback.
            if not started:
                await send_problem(BillfoldError(), scope, receive, send_with_id)
            raise

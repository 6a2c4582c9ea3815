"""Problem+json responses sent from ASGI middleware.

Middleware runs outside FastAPI's exception handlers, so an error it detects (a body too
large, a reused idempotency key) is rendered here, in the same RFC 9457 shape as
`billfold.kit.errors.install_problem_handlers` gives everything else.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from billfold.kit.errors import PROBLEM_JSON, BillfoldError, problem_document, problem_instance

__all__ = ["problem_response", "send_problem"]


def problem_response(
    error: BillfoldError, *, instance: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The problem+json response for `error`, as the installed handlers would render it."""
    # A 500 is our bug: its detail and extensions are for our logs, never for the client.
    hidden = error.status == 500
    document = problem_document(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=None if hidden else error.detail,
        instance=instance,
        extensions=None if hidden else error.extensions,
    )
    merged = {**error.response_headers(), **(headers or {})}
    return JSONResponse(
        document, status_code=error.status, headers=merged or None, media_type=PROBLEM_JSON
    )


async def send_problem(
    error: BillfoldError,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer the ASGI request `scope` with the problem document for `error`."""
    response = problem_response(
        error, instance=problem_instance(str(scope.get("path", ""))), headers=headers
    )
    await response(scope, receive, send)

"""The request body size limit: 413 problem+json, code `payload_too_large`.

A declared `Content-Length` over the limit is refused before the application runs; a body
without one (chunked) is counted as it streams, and reading stops at the first chunk that
crosses the limit, so no more than the limit (plus that one chunk) is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.kit.errors import BadRequest, PayloadTooLarge
from billfold.kit.http.problems import send_problem

__all__ = [
    "REQUEST_BODY_MAX_BYTES_DEFAULT",
    "REQUEST_BODY_MAX_BYTES_LIMIT",
    "BodySizeLimitMiddleware",
    "InvalidContentLength",
]

REQUEST_BODY_MAX_BYTES_DEFAULT = 1024 * 1024
REQUEST_BODY_MAX_BYTES_LIMIT = 1024 * 1024 * 1024
# More digits than any accepted length needs; a longer header is refused unparsed.
_CONTENT_LENGTH_DIGITS_MAX = 19


class InvalidContentLength(BadRequest):
    code = "invalid_content_length"
    title = "Invalid Content-Length"


class _BodyTooLargeError(Exception):
    """Raised from `receive` to stop the application reading; never leaves the middleware."""


@dataclass(slots=True)
class _Progress:
    received_bytes: int = 0
    exceeded: bool = False
    response_started: bool = False


def _declared_length(scope: Scope) -> int | None:
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return None
    value = bytes(values[0])
    # RFC 9110 section 8.6: a list of differing lengths is invalid; so is anything but digits.
    if len(set(values)) != 1 or not value.isdigit() or len(value) > _CONTENT_LENGTH_DIGITS_MAX:
        raise InvalidContentLength("Content-Length must be one non-negative integer")
    return int(value)


class BodySizeLimitMiddleware:
    """Refuses request bodies longer than `body_max_bytes` with 413."""

    def __init__(
        self, app: ASGIApp, *, body_max_bytes: int = REQUEST_BODY_MAX_BYTES_DEFAULT
    ) -> None:
        if not 1 <= body_max_bytes <= REQUEST_BODY_MAX_BYTES_LIMIT:
            raise ValueError(f"body_max_bytes must be 1..{REQUEST_BODY_MAX_BYTES_LIMIT}")
        self.app = app
        self.body_max_bytes = body_max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body exceeds {self.body_max_bytes} bytes.",
            body_max_bytes=self.body_max_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope)
        except InvalidContentLength as error:
            await send_problem(error, scope, receive, send)
            return
        if declared is not None and declared > self.body_max_bytes:
            await send_problem(self._too_large(), scope, receive, send)
            return
        await self._serve_counting(scope, receive, send)

    async def _serve_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        progress = _Progress()

        async def receive_counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                progress.received_bytes += len(message.get("body", b""))
                if progress.received_bytes > self.body_max_bytes:
                    progress.exceeded = True
                    raise _BodyTooLargeError
            return message

        async def send_unless_exceeded(message: Message) -> None:
            # An application that catches the error while reading (FastAPI turns it into a
            # 400) has its answer dropped: the client gets the 413 below instead.
            if progress.exceeded and not progress.response_started:
                return
            if message["type"] == "http.response.start":
                progress.response_started = True
            await send(message)

        try:
            await self.app(scope, receive_counting, send_unless_exceeded)
        except Exception:
            # `_BodyTooLargeError`, or whatever the application turned it into. Once a response
            # has started it cannot become a 413, so the server must see the failure.
            if not progress.exceeded or progress.response_started:
                raise
        if progress.exceeded and not progress.response_started:
            await send_problem(self._too_large(), scope, receive, send)

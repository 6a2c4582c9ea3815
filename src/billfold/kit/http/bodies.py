"""Request bodies: read whole and handed on, and JSON bodies held to I-JSON (RFC 7493).

Python's JSON reader takes what RFC 8259 leaves open: of two members with one name the last
wins (`{"amount": 1, "amount": 1000}` is a thousand), and text in UTF-16 or UTF-32 is
decoded. A proxy, a signer or a log that reads the same bytes differently would then see
another request than Billfold executes. `StrictJsonMiddleware` refuses a JSON body (one
sent as `application/json` or `application/…+json`) with a repeated member name (422
`validation_failed`, error type `json_duplicate_name`) or that is not UTF-8 (400
`body_unreadable`), before any route reads it. Malformed JSON is left to the route's own
reader, which answers it as before.

I-JSON also forbids, in names and strings, the code points that are surrogates (an escaped
`\ud800` with no pair, which no UTF-8 can carry) or noncharacters (U+FDD0 to U+FDEF and the
last two of every plane). Billfold refuses U+0000 as well, which PostgreSQL cannot store in
text. Such a body is 422 `validation_failed`, error type `json_forbidden_code_point`, one
answer for every route, where before each field's own checks answered (or, for a field
without any, stored it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.kit.errors import BadRequest, BodyUnreadable, PayloadTooLarge, ValidationFailed
from billfold.kit.http.problems import send_problem

__all__ = [
    "StrictJsonMiddleware",
    "json_body_problem",
    "read_body",
    "replaying_receive",
]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def read_body(receive: Receive, body_max_bytes: int) -> bytes | None:
    """The whole request body; None when the client went away first."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > body_max_bytes:
            raise PayloadTooLarge(
                f"The request body exceeds {body_max_bytes} bytes.", body_max_bytes=body_max_bytes
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def replaying_receive(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` (already read) first, then what `receive` gives."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()  # after the body: the client's disconnect, when it comes
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _RepeatedNameError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _RepeatedNameError(name)
            seen.add(name)
    return members


_NAME_SHOWN_MAX = 64
"""The most of a repeated member name the problem echoes (the body may be megabytes)."""

_NONCHARACTERS = "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
_FORBIDDEN = re.compile(f"[\x00\ud800-\udfff\ufdd0-\ufdef{_NONCHARACTERS}]")
"""U+0000, surrogates and noncharacters (see the module)."""


def _strings(value: object) -> Iterator[str]:
    """Every member name and string in a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield name
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _has_forbidden_code_point(text: str, value: object) -> bool:
    """Whether `value`, parsed from `text`, holds a code point of `_FORBIDDEN`. Raw in the
    text only noncharacters can be (JSON has no raw U+0000, UTF-8 no surrogates); the rest
    come from `\\u` escapes, so only a text with one is walked."""
    if _FORBIDDEN.search(text) is not None:
        return True
    return "\\u" in text and any(_FORBIDDEN.search(string) for string in _strings(value))


def _not_utf8() -> BodyUnreadable:
    return BodyUnreadable("The body is not UTF-8 (RFC 8259 section 8.1).")


def json_body_problem(body: bytes) -> BadRequest | ValidationFailed | None:
    """Why `body`, sent as JSON, is refused (see the module); None when it is UTF-8 with
    unique member names, or is not JSON at all (the route's reader says so itself)."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a BOM may be ignored (RFC 8259)
    except UnicodeDecodeError:
        return _not_utf8()
    try:
        value = json.loads(text, object_pairs_hook=_unique_members)
    except _RepeatedNameError as repeated:
        return ValidationFailed(
            "The request has 1 invalid field.",
            errors=[
                {
                    "loc": ["body"],
                    "message": f"The member name {repeated.name[:_NAME_SHOWN_MAX]!r} appears"
                    " twice in one object.",
                    "type": "json_duplicate_name",
                }
            ],
        )
    except (ValueError, RecursionError):
        # Not JSON as UTF-8. The route's reader also tries UTF-16 and UTF-32 (text in them
        # can be valid UTF-8 bytes too: ASCII with NULs between): JSON it would read that
        # way is refused here; what it cannot read either, it answers itself.
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return None
        return _not_utf8()
    if _has_forbidden_code_point(text, value):
        return ValidationFailed(
            "The request has 1 invalid field.",
            errors=[
                {
                    "loc": ["body"],
                    "message": "A name or string holds U+0000, a surrogate or a noncharacter"
                    " (RFC 7493 section 2.1).",
                    "type": "json_forbidden_code_point",
                }
            ],
        )
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = bytes(value).partition(b";")[0].strip().lower()
            return media_type == b"application/json" or (
                media_type.startswith(b"application/") and media_type.endswith(b"+json")
            )
    return False


class StrictJsonMiddleware:
    """Refuses JSON request bodies that are not I-JSON (see the module)."""

    def __init__(self, app: ASGIApp, *, body_max_bytes: int) -> None:
        self.app = app
        self._body_max_bytes = body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, self._body_max_bytes)
        except PayloadTooLarge as error:
            await send_problem(error, scope, receive, send)
            return
        if body is None:
            return  # the client went away
        problem = json_body_problem(body) if body else None
        if problem is not None:
            await send_problem(problem, scope, receive, send)
            return
        await self.app(scope, replaying_receive(body, receive), send)

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

**Content codings.** A body sent with a `Content-Encoding` other than `identity` (gzip,
deflate, br, …), JSON or not, is 415 `unsupported_content_encoding` with `Accept-Encoding:
identity`: Billfold decodes no coding, and before this a coded JSON body was read as text
(400 "not UTF-8") and a plain one mislabelled as coded was executed. An empty body and a
path no route serves answer as before.

Numbers: a JSON number Python cannot read as a number is 422 `validation_failed`, error type
`json_number_out_of_range`, rather than 400 `body_unreadable` (the body is well-formed JSON;
one value in it is out of range): an integer of more digits than `int()` converts
(`sys.get_int_max_str_digits()`, 4,300 by default) and a number whose magnitude is beyond an
IEEE 754 double (`1e999999`, which Python would read as infinity; RFC 7493 section 2.2).
`NaN`, `Infinity` and `-Infinity`, which Python's reader takes but are not JSON (RFC 8259
section 6), are 422 `validation_failed`, error type `json_invalid`, as malformed JSON is.
A long fraction (`0.1111…` of thousands of digits) is read as the nearest double, as any
JSON reader does, and the route's fields judge it.

**The credential comes first.** On a route that requires a credential (one whose
dependencies declare a security scheme, as the OpenAPI document shows), a body refused
above, or malformed JSON or JSON nested past the parser's limit sent to a route that reads
a body, is answered only after the route's credential dependencies have run, as the route
would run them: a caller without a valid credential gets the route's own 401
(`WWW-Authenticate` included), a credential without the scope its 403 and one over its rate
limit its 429, and learns nothing about the body. FastAPI itself reads a route's body before
it runs any dependency, so before this an anonymous caller learned whether its body parsed.
An admitted caller gets the body's problem as before, counted against its rate limit (so
with the `RateLimit` fields), its credential checked once. Public routes, and paths no route
serves, answer as before. A body over the size limit is still 413 before anything else: it
is refused while it is read, before any route or credential check runs.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.kit.auth import counted_rate_limit_fields
from billfold.kit.errors import (
    BadRequest,
    BodyUnreadable,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    ValidationFailed,
)
from billfold.kit.http.problems import send_problem

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant
    from starlette.responses import Response

__all__ = [
    "StrictJsonMiddleware",
    "credential_refusal",
    "is_json_media_type",
    "json_body_problem",
    "read_body",
    "replaying_receive",
]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CODINGS_SHOWN = 4
_CODING_SHOWN_MAX = 32
"""A refused body's content codings echoed in the problem: a few, each cut short (the
header is the client's and may be long)."""


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


class _NumberOutOfRangeError(ValueError):
    """A JSON number Python cannot hold as a number (see the module)."""


class _NotJsonConstantError(ValueError):
    """`NaN`, `Infinity` or `-Infinity`: Python's reader takes them, JSON has none."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _RepeatedNameError(name)
            seen.add(name)
    return members


def _finite_float(text: str) -> float:
    """A number with a fraction or an exponent, unless its magnitude is beyond a double's
    (Python reads `1e999999` as infinity)."""
    value = float(text)
    if math.isinf(value):
        raise _NumberOutOfRangeError(
            "A number's magnitude is beyond an IEEE 754 double (RFC 7493 section 2.2)."
        )
    return value


def _convertible_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than `sys.get_int_max_str_digits()` allows
        raise _NumberOutOfRangeError(
            f"An integer has more than {sys.get_int_max_str_digits()} digits."
        ) from None


def _not_a_json_constant(text: str) -> object:
    raise _NotJsonConstantError(text)


def _loads(text: str, *, checking_integers: bool = False) -> object:
    """`text` parsed with every check of the module but the code points'. Integers are
    checked only when asked: a hook for each one costs a body of many a third more, and
    only an integer too long for `int()` makes the plain reader raise a bare ValueError."""
    return json.loads(
        text,
        object_pairs_hook=_unique_members,
        parse_float=_finite_float,
        parse_constant=_not_a_json_constant,
        parse_int=_convertible_int if checking_integers else None,
    )


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


def _invalid_body(message: str, error_type: str) -> ValidationFailed:
    return ValidationFailed(
        "The request has 1 invalid field.",
        errors=[{"loc": ["body"], "message": message, "type": error_type}],
    )


_Problem = BadRequest | ValidationFailed


def _parse(text: str) -> object:
    try:
        return _loads(text)
    except (
        json.JSONDecodeError,
        _RepeatedNameError,
        _NumberOutOfRangeError,
        _NotJsonConstantError,
    ):
        raise
    except ValueError:
        # Only `int()` raises a bare ValueError: again, with each integer checked.
        return _loads(text, checking_integers=True)


def _examine(body: bytes) -> tuple[_Problem | None, bool]:
    """Why `body`, sent as JSON, is refused (see the module), or None; and whether it is
    readable: False when it is no JSON text the route's reader can read either, which that
    reader then answers itself (422 for malformed JSON, 400 past its nesting limit)."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a BOM may be ignored (RFC 8259)
    except UnicodeDecodeError:
        return _not_utf8(), True
    try:
        value = _parse(text)
    except _RepeatedNameError as repeated:
        message = (
            f"The member name {repeated.name[:_NAME_SHOWN_MAX]!r} appears twice in one object."
        )
        return _invalid_body(message, "json_duplicate_name"), True
    except _NumberOutOfRangeError as out_of_range:
        return _invalid_body(str(out_of_range), "json_number_out_of_range"), True
    except _NotJsonConstantError as constant:
        message = f"{constant} is not a JSON number (RFC 8259 section 6)."
        return _invalid_body(message, "json_invalid"), True
    except (ValueError, RecursionError):
        # Not JSON as UTF-8. The route's reader also tries UTF-16 and UTF-32 (text in them
        # can be valid UTF-8 bytes too: ASCII with NULs between): JSON it would read that
        # way is refused here; what it cannot read either, it answers itself.
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return None, False
        return _not_utf8(), True
    if _has_forbidden_code_point(text, value):
        message = (
            "A name or string holds U+0000, a surrogate or a noncharacter (RFC 7493 section 2.1)."
        )
        return _invalid_body(message, "json_forbidden_code_point"), True
    return None, True


def json_body_problem(body: bytes) -> BadRequest | ValidationFailed | None:
    """Why `body`, sent as JSON, is refused (see the module); None when it is I-JSON, or is
    not JSON at all (the route's reader says so itself)."""
    return _examine(body)[0]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON: `application/json` or `application/…+json`, with
    or without parameters, in any case (RFC 9110 section 8.3.1)."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return is_json_media_type(bytes(value).decode("latin-1"))
    return False


def _content_codings(scope: Scope) -> list[str]:
    """The content codings a request's `Content-Encoding` fields list, lowercased, other
    than `identity` (RFC 9110 section 8.4: a comma-separated list, possibly over several
    fields)."""
    codings = []
    for name, value in scope["headers"]:
        if name == b"content-encoding":
            for coding in bytes(value).decode("latin-1").split(","):
                cleaned = coding.strip(" \t").lower()
                if cleaned and cleaned != "identity":
                    codings.append(cleaned)
    return codings


def _guards(dependant: Dependant) -> list[Dependant]:
    """The dependencies of a route (`dependant`) that hold a security scheme: those that
    prove its caller (none for a public route)."""
    from fastapi.security.base import SecurityBase

    def secured(node: Dependant) -> bool:
        return isinstance(node.call, SecurityBase) or any(map(secured, node.dependencies))

    return [node for node in dependant.dependencies if secured(node)]


def _route_for(scope: Scope) -> tuple[Any, Scope] | None:
    """The route (FastAPI's `RouteContext`) that will serve the request, and what it adds
    to the request's scope (its path parameters); None when no route serves it."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Match

    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if not isinstance(routes, list):
        return None
    for route in iter_route_contexts(routes):
        match, child_scope = route.matches(scope)
        if match == Match.FULL:
            return route, child_scope
    return None


def _exception_handler(app: Any, error: Exception) -> Any | None:
    """The handler `app` installed for `error`, found as Starlette's exception middleware
    finds it (a handler for 500 or `Exception` is the server error middleware's, which
    renders what propagates)."""
    from starlette.exceptions import HTTPException

    handlers = getattr(app, "exception_handlers", None)
    if not isinstance(handlers, dict):
        return None
    if isinstance(error, HTTPException) and error.status_code != 500:
        handler = handlers.get(error.status_code)
        if handler is not None:
            return handler
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None


async def credential_refusal(
    scope: Scope, body: bytes, receive: Receive, *, only_where_body_read: bool
) -> Response | None:
    """The answer of the credential checks of the route the request goes to, when they
    refuse it (401, 403, 429, …), rendered by the application's exception handlers; None
    when they admit it or the route is public. With `only_where_body_read`, a route that
    reads no JSON body is not checked here: it never looks at the body, and runs its own
    checks (once) as before.

    The checks are the route's own dependencies, solved by FastAPI's `solve_dependencies`
    (dependency overrides, sub-dependencies and `yield` included) on a route found by
    `iter_route_contexts`: both FastAPI 0.165's, as pinned by the lock file."""
    from fastapi.dependencies.models import Dependant
    from fastapi.dependencies.utils import solve_dependencies
    from fastapi.params import Form
    from starlette.requests import Request

    found = _route_for(scope)
    if found is None:
        return None
    route, child_scope = found
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return None
    body_field = getattr(route, "body_field", None)
    reads_json = body_field is not None and not isinstance(body_field.field_info, Form)
    if only_where_body_read and not reads_json:
        return None
    guards = _guards(dependant)
    if not guards:
        return None
    # The request's state is shared, so the route's layers see the principal admitted here
    # and the rate limit counts the request once.
    scope.setdefault("state", {})
    checking: Scope = {**scope, **child_scope}
    request = Request(checking, replaying_receive(body, receive))
    try:
        async with AsyncExitStack() as stack:
            checking["fastapi_inner_astack"] = stack
            checking["fastapi_function_astack"] = stack
            await solve_dependencies(
                request=request,
                dependant=Dependant(dependencies=guards, path=dependant.path),
                dependency_overrides_provider=getattr(route, "dependency_overrides_provider", None),
                async_exit_stack=stack,
                embed_body_fields=False,
            )
    except Exception as error:
        handler = _exception_handler(scope.get("app"), error)
        if handler is None:
            raise  # as from the route: the server error middleware answers 500
        response = handler(request, error)
        return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]
    return None


class StrictJsonMiddleware:
    """Refuses JSON request bodies that are not I-JSON; on a route that requires a
    credential, only once its checks admit the caller (see the module)."""

    def __init__(self, app: ASGIApp, *, body_max_bytes: int) -> None:
        self.app = app
        self._body_max_bytes = body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        codings = _content_codings(scope)
        if not codings and not _is_json(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, self._body_max_bytes)
        except PayloadTooLarge as error:
            await send_problem(error, scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if codings and body and _route_for(scope) is not None:
            await self._refuse_coded(scope, body, receive, send, codings)
            return
        if not _is_json(scope):
            await self.app(scope, replaying_receive(body, receive), send)
            return
        problem, readable = _examine(body) if body else (None, True)
        if problem is None and readable:
            await self.app(scope, replaying_receive(body, receive), send)
            return
        refusal = await credential_refusal(
            scope, body, receive, only_where_body_read=problem is None
        )
        if refusal is not None:
            await refusal(scope, receive, send)
        elif problem is not None:
            headers = counted_rate_limit_fields(scope)
            await send_problem(problem, scope, receive, send, headers=headers)
        else:  # admitted: the route's reader answers the body it cannot read, as before
            await self.app(scope, replaying_receive(body, receive), send)

    @staticmethod
    async def _refuse_coded(
        scope: Scope, body: bytes, receive: Receive, send: Send, codings: list[str]
    ) -> None:
        """415 for a body in a content coding, once the route's credential checks admit the
        caller (an anonymous one gets the route's 401, as for any refused body)."""
        refusal = await credential_refusal(scope, body, receive, only_where_body_read=False)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        named = ", ".join(repr(coding[:_CODING_SHOWN_MAX]) for coding in codings[:_CODINGS_SHOWN])
        error = UnsupportedContentEncoding(
            f"The body is in a content coding ({named}); send it unencoded"
            " (Content-Encoding: identity, or no Content-Encoding)."
        )
        headers = {**counted_rate_limit_fields(scope), "Accept-Encoding": "identity"}
        await send_problem(error, scope, receive, send, headers=headers)

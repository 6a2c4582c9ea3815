"""Typed errors and their rendering as RFC 9457 ``application/problem+json``.

Every expected failure in Billfold is a subclass of :class:`BillfoldError` with a stable
``code`` (clients branch on it, so it never changes once shipped), an HTTP ``status`` and a
short ``title``. One set of handlers, installed by :func:`install_problem_handlers`, renders
them; domain code never builds an HTTP response for an error.

The hierarchy::

    Exception
    └── BillfoldError                 500 internal_error
        ├── BadRequest                400 bad_request
        ├── Unauthorized              401 unauthorized
        ├── Forbidden                 403 forbidden
        ├── NotFound                  404 not_found
        ├── Conflict                  409 conflict
        ├── PayloadTooLarge           413 payload_too_large
        ├── ValidationFailed          422 validation_failed
        ├── RateLimited               429 rate_limited
        ├── InvariantViolation        500 invariant_violation
        └── ServiceUnavailable        503 service_unavailable

Domain modules subclass the branch whose status fits (``kit.money.UnknownAsset`` is a
``ValidationFailed``, ``kit.pagination.InvalidCursor`` a ``BadRequest``) and give the
subclass its own ``code`` and ``title``.
"""

# Errors are named for what went wrong (NotFound, Conflict), as HTTP names them, not *Error.
# ruff: noqa: N818

from __future__ import annotations

import http
import logging
import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias
from urllib.parse import quote

from billfold.kit.bearer import bearer_token

# FastAPI takes about a second to import; the ledger, worker and CLI import this module
# without serving HTTP, so the web framework is imported only where it is used.
if TYPE_CHECKING:
    import fastapi
    from fastapi.exceptions import RequestValidationError
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "ERRORS_LISTED_MAX",
    "PROBLEM_JSON",
    "PROBLEM_TYPE_BASE",
    "BadRequest",
    "BearerTokenRejected",
    "BillfoldError",
    "BodyUnreadable",
    "Conflict",
    "Forbidden",
    "InvariantViolation",
    "JSONValue",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedContentEncoding",
    "UnsupportedMediaType",
    "ValidationFailed",
    "install_problem_handlers",
    "invariant",
    "problem_document",
    "problem_instance",
]

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://billfold.dev/problems/"

# A request with thousands of bad fields must not produce a response of unbounded size.
ERRORS_LISTED_MAX = 50

JSONValue: TypeAlias = (
    str | int | float | bool | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)

# RFC 9457 section 3.1: these belong to the problem document itself; an extension of the
# same name would change the meaning of the document, so none may use them.
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code"})
# RFC 9457 section 3.2 recommends this shape so extensions stay usable from every language.
_EXTENSION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}", re.ASCII)
_CODE = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)
# Bounds how deep an extension value may nest; a cycle would otherwise recurse forever.
_EXTENSION_DEPTH_MAX = 16
# What a 415 names as the media type the request body must have (`UnsupportedMediaType`).
_ACCEPT_JSON: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})

_logger = logging.getLogger(__name__)


class BillfoldError(Exception):
    """Base of every typed Billfold error; unexpected unless subclassed."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An inherited code would silently give two different failures the same identity
        # on the wire, so each class must name its own.
        for name in ("code", "title"):
            if name not in cls.__dict__:
                raise TypeError(f"{cls.__qualname__} must define its own {name!r}")
        if not _CODE.fullmatch(cls.code):
            raise TypeError(f"{cls.__qualname__}.code must be snake_case, got {cls.code!r}")
        if not 400 <= cls.status <= 599:
            raise TypeError(f"{cls.__qualname__}.status must be 4xx or 5xx, got {cls.status}")

    def __init__(self, detail: str | None = None, **extensions: JSONValue) -> None:
        super().__init__(detail if detail is not None else self.title)
        self._detail = detail
        for name in extensions:
            if name in _STANDARD_MEMBERS or not _EXTENSION_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot be a problem extension member")
        # Copied into plain lists and dicts now, so a caller mutating its own objects later
        # cannot change the error, and a non-JSON value fails where it was raised.
        self._extensions: dict[str, JSONValue] = {
            name: _plain_json(value, depth=0) for name, value in extensions.items()
        }

    @property
    def detail(self) -> str | None:
        """Human-readable explanation specific to this occurrence, if any."""
        return self._detail

    @property
    def extensions(self) -> Mapping[str, JSONValue]:
        """Extra members for the problem document (read-only)."""
        return MappingProxyType(self._extensions)

    def response_headers(self) -> Mapping[str, str]:
        """Headers the HTTP response must carry; none unless a subclass needs some (a 401
        names its scheme in ``WWW-Authenticate``, RFC 9110 section 11.6.1)."""
        return {}


class BadRequest(BillfoldError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class Unauthorized(BillfoldError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class BearerTokenRejected(Unauthorized):
    """No valid bearer credential (RFC 6750). Its challenge (``response_headers``) is the
    scheme and realm alone; when the request did present a bearer token, the handler adds
    ``error="invalid_token"`` (section 3.1), which a request without one must not get. Every
    other failure (unknown, revoked, expired, malformed) looks alike."""

    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(BillfoldError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(BillfoldError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(BillfoldError):
    code = "conflict"
    status = 409
    title = "Conflict"


class PayloadTooLarge(BillfoldError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class BodyUnreadable(BadRequest):
    code = "body_unreadable"
    title = "Unreadable request body"


class UnsupportedMediaType(BillfoldError):
    """A request body in a media type the target does not take. Answered with `Accept`,
    which names the one it does (RFC 9110 sections 15.5.16 and 12.5.1)."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"

    def response_headers(self) -> Mapping[str, str]:
        return _ACCEPT_JSON


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A request body sent with a content coding (`Content-Encoding: gzip`, …): Billfold
    decodes none, and reading coded bytes as JSON would misread them (RFC 9110 section 8.4:
    an origin server may answer 415). Answered with `Accept-Encoding: identity`, which
    names the codings it would take (RFC 9110 section 15.5.16)."""

    code = "unsupported_content_encoding"
    title = "Unsupported content coding"


class ValidationFailed(BillfoldError):
    code = "validation_failed"
    status = 422
    title = "Validation failed"


class RateLimited(BillfoldError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class InvariantViolation(BillfoldError):
    """Something that must never happen did: a bug, never an operating error."""

    code = "invariant_violation"
    status = 500
    title = "Internal server error"


class ServiceUnavailable(BillfoldError):
    code = "service_unavailable"
    status = 503
    title = "Service unavailable"


def invariant(condition: bool, message: str) -> None:
    """Raise :class:`InvariantViolation` unless ``condition`` holds.

    ``assert`` is stripped by ``python -O``; the checks that keep money safe must not be.
    """
    if not condition:
        raise InvariantViolation(message)


def _plain_json(value: object, *, depth: int) -> JSONValue:
    if depth > _EXTENSION_DEPTH_MAX:
        raise ValueError("problem extension nests too deeply")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        # Starlette serialises with allow_nan=False; a NaN here would turn the error
        # response itself into a 500.
        if not math.isfinite(value):
            raise ValueError("problem extensions must be finite numbers")
        return value
    if isinstance(value, Mapping):
        plain: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"problem extension keys must be str, got {type(key).__name__}")
            plain[key] = _plain_json(item, depth=depth + 1)
        return plain
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [_plain_json(item, depth=depth + 1) for item in value]
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable in a problem document")


_PATH_CHARACTERS = "/:@!$&'()*+,;=-._~"
"""RFC 3986 `pchar`s and `/`: what a path keeps unencoded."""


def problem_instance(path: str) -> str:
    """The `instance` member for a request to `path` (the decoded path ASGI gives): a URI
    reference, as RFC 9457 requires, so what was percent-encoded is encoded again
    (`/v1/nope/%C3%A9`, not `/v1/nope/é`)."""
    return quote(path, safe=_PATH_CHARACTERS)


def problem_document(
    *,
    status: int,
    code: str | None,
    title: str,
    detail: str | None,
    instance: str | None,
    type_uri: str | None = None,
    extensions: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Build an RFC 9457 problem details object.

    ``type`` is ``type_uri`` if given, else the Billfold URI for ``code``, else
    ``about:blank`` (in which case RFC 9457 asks for ``title`` to be the status phrase).
    Extensions follow the standard members and never replace one, even an absent one.
    """
    invariant(400 <= status <= 599, f"problem status must be 4xx or 5xx, got {status}")
    if type_uri is None:
        type_uri = f"{PROBLEM_TYPE_BASE}{code}" if code else "about:blank"
    document: dict[str, object] = {"type": type_uri, "title": title, "status": status}
    if detail is not None:
        document["detail"] = detail
    if instance is not None:
        document["instance"] = instance
    if code:
        document["code"] = code
    for name, value in (extensions or {}).items():
        if name not in _STANDARD_MEMBERS:
            document[name] = value
    return document


def install_problem_handlers(app: fastapi.FastAPI) -> None:
    """Render every error raised while serving ``app`` as ``application/problem+json``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    app.add_exception_handler(BillfoldError, _handle_billfold_error)
    app.add_exception_handler(RequestValidationError, _handle_request_validation_error)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    # Starlette sends handlers for Exception to its outermost middleware, which renders
    # our response and then re-raises, so the server still logs the traceback.
    app.add_exception_handler(Exception, _handle_unexpected_error)


def _problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None,
    extensions: Mapping[str, object] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    from fastapi.responses import JSONResponse

    from billfold.kit.auth import counted_rate_limit_fields

    # A request counted against a rate limit says where its caller stands, refused or not.
    counted = counted_rate_limit_fields(request.scope)
    if counted:
        headers = {**counted, **(headers or {})}
    if status == 500:
        # A 500 is our bug; its detail is for our logs, never for the client.
        detail, extensions = None, None
    document = problem_document(
        status=status,
        code=code,
        title=title,
        detail=detail,
        instance=problem_instance(request.url.path),
        extensions=extensions,
    )
    return JSONResponse(document, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _handle_billfold_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BillfoldError):
        raise exc
    if exc.status >= 500:
        # Handled errors never reach the server's own logging, so record them here.
        _logger.error("%s on %s", exc.code, request.url.path, exc_info=exc)
    return _problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        extensions=exc.extensions,
        headers=_headers_for(request, exc) or None,
    )


def _headers_for(request: Request, exc: BillfoldError) -> Mapping[str, str]:
    headers = exc.response_headers()
    challenge = headers.get("WWW-Authenticate")
    if challenge is None or not isinstance(exc, BearerTokenRejected):
        return headers
    if bearer_token(request.headers.getlist("authorization")) is None:
        return headers
    return {**headers, "WWW-Authenticate": f'{challenge}, error="invalid_token"'}


async def _handle_request_validation_error(request: Request, exc: Exception) -> Response:
    from fastapi.exceptions import RequestValidationError

    if not isinstance(exc, RequestValidationError):
        raise exc
    all_errors = exc.errors()
    if _body_not_json(exc):
        headers = dict(_ACCEPT_JSON)
        if request.method == "PATCH":
            headers["Accept-Patch"] = "application/json"  # RFC 5789 section 2.2
        return _problem_response(
            request,
            status=UnsupportedMediaType.status,
            code=UnsupportedMediaType.code,
            title=UnsupportedMediaType.title,
            detail="The request body must be JSON (Content-Type: application/json).",
            headers=headers,
        )
    listed = [_validation_error_entry(error) for error in all_errors[:ERRORS_LISTED_MAX]]
    count = len(all_errors)
    return _problem_response(
        request,
        status=ValidationFailed.status,
        code=ValidationFailed.code,
        title=ValidationFailed.title,
        detail=f"The request has {count} invalid field{'s' if count != 1 else ''}.",
        extensions={"errors": listed},
    )


def _body_not_json(exc: RequestValidationError) -> bool:
    """Whether a body failed validation because it was not sent as JSON: FastAPI reads a
    body as JSON only under `application/json` or `application/…+json`, and hands any other
    (`text/plain`, no Content-Type at all) to validation as bytes, which RFC 9110 answers
    with a 415 rather than a 422 about its fields. An empty body stays a 422 (a required
    body is missing)."""
    body = getattr(exc, "body", None)
    return isinstance(body, bytes | bytearray) and bool(body)


def _validation_error_entry(error: object) -> dict[str, object]:
    # Pydantic's error dicts carry the offending input and context objects, which may be
    # anything (bytes, exceptions, secrets); only these three members are safe to echo.
    if not isinstance(error, Mapping):
        return {"loc": [], "message": "Invalid value.", "type": "value_error"}
    location = error.get("loc", ())
    if not isinstance(location, list | tuple):
        location = ()
    return {
        "loc": [part if isinstance(part, str | int) else str(part) for part in location],
        "message": str(error.get("msg", "Invalid value.")),
        "type": str(error.get("type", "value_error")),
    }


_UNPARSEABLE_BODY = "There was an error parsing the body"
"""FastAPI's detail for a body it failed to read before any validation."""


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    if not isinstance(exc, HTTPException):
        raise exc
    status = exc.status_code
    headers = exc.headers
    if status < 400:
        # 1xx, 204 and 304 must not carry a body; a redirect raised as an exception is
        # passed through as Starlette would.
        return Response(status_code=status, headers=headers)
    title = _status_phrase(status)
    codes = {404: "not_found", 405: "method_not_allowed", 501: "method_not_implemented"}
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    code = codes.get(status, f"http_{status}")
    if status == 400 and detail == _UNPARSEABLE_BODY:
        # FastAPI's answer to a body its JSON reader could not even decode (bytes that are
        # not UTF-8, nesting past the recursion limit; and an integer of thousands of
        # digits, which `kit.http.bodies.StrictJsonMiddleware` answers first, as 422).
        code, title = BodyUnreadable.code, BodyUnreadable.title
        detail = "The body could not be read as JSON text."
    return _problem_response(
        request, status=status, code=code, title=title, detail=detail, headers=headers
    )


async def _handle_unexpected_error(request: Request, exc: Exception) -> Response:
    return _problem_response(
        request,
        status=BillfoldError.status,
        code=BillfoldError.code,
        title=BillfoldError.title,
        detail=None,
    )


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"

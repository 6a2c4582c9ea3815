"""Errors the SDK raises: every problem+json answer becomes a typed exception.

BillfoldClientError
├── TransportError                 the request never got an HTTP answer
├── UnexpectedResponseError        an answer that is not Billfold's (not JSON, not decodable,
│                                  a redirect, a 404 page)
├── NotSignedInError               a user or operator client used before signing in
├── PaginationLimitError           a listing went on past the pages allowed
└── ApiError                       an HTTP error answer (RFC 9457 problem+json)
    ├── BadRequestError            400
    ├── AuthenticationError        401
    │   └── RefreshTokenInvalidError  401 refresh_token_invalid: the session is over
    │                                 (spent, reused, expired or revoked): sign in again
    ├── PermissionDeniedError      403
    ├── NotFoundError              404
    ├── ConflictError              409
    ├── PayloadTooLargeError       413
    ├── ValidationError            422 (ledger results such as exceeds_credits land here)
    ├── RateLimitedError           429 (after the retries allowed)
    └── ServerError                5xx

Every `ApiError` carries the problem's stable `code` (branch on it), `title`, `detail`, the
extension members (`extensions`, e.g. `errors`, `required_scopes`, `limit`), the HTTP
status and the `X-Request-Id` of the answer (quote it when asking for help).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "BillfoldClientError",
    "ConflictError",
    "NotFoundError",
    "NotSignedInError",
    "PaginationLimitError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RefreshTokenInvalidError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
    "error_for",
]

_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code"})


class BillfoldClientError(Exception):
    """Anything the SDK raises."""


class TransportError(BillfoldClientError):
    """No HTTP answer (connection refused, timeout) even after the retries allowed."""


class UnexpectedResponseError(BillfoldClientError):
    """Not Billfold's answer (a wrong `base_url`, a captive portal, a proxy's page): a
    success whose body is not JSON or not labelled so (an event stream not
    `text/event-stream`), a redirect (3xx), a 404 or 405 not labelled JSON (another
    server's page: every route the SDK calls exists on Billfold), or any body its
    `Content-Encoding` does not decode. Carries `status` and `content_type`."""

    def __init__(self, message: str, *, status: int, content_type: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.content_type = content_type


class NotSignedInError(BillfoldClientError):
    """A user or operator client has no session yet (or it ended): sign in first."""


class PaginationLimitError(BillfoldClientError):
    """A listing returned more pages than `pages_max` allowed."""


class ApiError(BillfoldClientError):
    """An HTTP error answer. `code` is the stable problem code clients branch on."""

    def __init__(
        self,
        *,
        status: int,
        problem: Mapping[str, Any],
        request_id: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.problem = dict(problem)
        # A gateway's own JSON may carry other members or types ({"code": 502}): only a
        # problem's string members are taken, so `code` is always one to branch on.
        code, title, detail = (problem.get(name) for name in ("code", "title", "detail"))
        self.code = code if isinstance(code, str) and code else f"http_{status}"
        self.title = title if isinstance(title, str) else ""
        self.detail = detail if isinstance(detail, str) else None
        self.extensions: dict[str, Any] = {
            name: value for name, value in problem.items() if name not in _STANDARD_MEMBERS
        }
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        super().__init__(f"{status} {self.code}: {self.detail or self.title}")


class BadRequestError(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class RefreshTokenInvalidError(AuthenticationError):
    """The refresh token was refused. When it had been used before, the server took it for
    theft and ended the session: whoever is legitimate signs in again."""


class PermissionDeniedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class PayloadTooLargeError(ApiError):
    pass


class ValidationError(ApiError):
    pass


class RateLimitedError(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
}
_BY_CODE: dict[str, type[ApiError]] = {
    "refresh_token_invalid": RefreshTokenInvalidError,
}


def error_for(
    *,
    status: int,
    problem: Mapping[str, Any],
    request_id: str | None,
    retry_after_s: float | None = None,
) -> ApiError:
    """The exception for an error answer: by problem code where the SDK has a class for
    it, else by status."""
    kind = _BY_CODE.get(str(problem.get("code", "")))
    if kind is None or kind.__mro__[1] is not _BY_STATUS.get(status):
        kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return kind(status=status, problem=problem, request_id=request_id, retry_after_s=retry_after_s)

"""Errors the SDK raises: every problem+json answer becomes a typed exception.

BillfoldClientError
├── TransportError                 the request never got an HTTP answer
└── ApiError                       an HTTP error answer (RFC 9457 problem+json)
    ├── BadRequestError            400
    ├── AuthenticationError        401
    ├── PermissionDeniedError      403
    ├── NotFoundError              404
    ├── ConflictError              409
    ├── ValidationError            422 (ledger results such as exceeds_credits land here)
    ├── RateLimitedError           429
    └── ServerError                5xx
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
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "error_for",
]


class BillfoldClientError(Exception):
    """Anything the SDK raises."""


class TransportError(BillfoldClientError):
    """No HTTP answer (connection refused, timeout) even after the retries allowed."""


class ApiError(BillfoldClientError):
    """An HTTP error answer. `code` is the stable problem code clients branch on."""

    def __init__(self, *, status: int, problem: Mapping[str, Any], request_id: str | None):
        self.status = status
        self.problem = dict(problem)
        self.code = str(problem.get("code", f"http_{status}"))
        self.title = str(problem.get("title", ""))
        self.detail = problem.get("detail")
        self.request_id = request_id
        super().__init__(f"{status} {self.code}: {self.detail or self.title}")


class BadRequestError(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class PermissionDeniedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
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
    422: ValidationError,
    429: RateLimitedError,
}


def error_for(*, status: int, problem: Mapping[str, Any], request_id: str | None) -> ApiError:
    """The exception for an error answer."""
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return kind(status=status, problem=problem, request_id=request_id)

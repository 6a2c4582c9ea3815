"""Identity's typed errors, rendered as problem+json by the kit's handlers.

The hierarchy::

    BillfoldError
    ├── Unauthorized
    │   └── NotAuthenticated        401 unauthorized (+ WWW-Authenticate: Bearer)
    ├── Forbidden
    │   ├── InsufficientScope       403 insufficient_scope (kit.auth's, re-exported)
    │   └── ModeMismatch            403 mode_mismatch
    ├── NotFound
    │   ├── TenantNotFound          404 tenant_not_found
    │   └── ApiKeyNotFound          404 api_key_not_found
    ├── Conflict
    │   ├── TenantSuspended         409 tenant_suspended
    │   └── ApiKeyLimitReached      409 api_key_limit_reached
    └── ValidationFailed
        ├── InvalidName             422 invalid_name
        ├── InvalidExpiry           422 invalid_expiry
        └── LiveOnlyScope           422 live_only_scope
"""

from __future__ import annotations

from collections.abc import Mapping

from billfold.kit.auth import InsufficientScope
from billfold.kit.errors import (
    BearerTokenRejected,
    Conflict,
    Forbidden,
    NotFound,
    ValidationFailed,
)

__all__ = [
    "ApiKeyLimitReached",
    "ApiKeyNotFound",
    "InsufficientScope",
    "InvalidExpiry",
    "InvalidName",
    "LiveOnlyScope",
    "ModeMismatch",
    "NotAuthenticated",
    "TenantNotFound",
    "TenantSuspended",
]


class NotAuthenticated(BearerTokenRejected):
    """No valid API key: missing, malformed, unknown, revoked, expired or of a suspended
    tenant. One error with one fixed message for all of them, so a caller probing keys
    learns nothing about which case it hit."""

    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("A valid API key is required in the header 'Authorization: Bearer <key>'.")

    def __reduce__(self) -> tuple[type[NotAuthenticated], tuple[()]]:
        # The fixed message is not an argument, so unpickling rebuilds it from nothing.
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="billfold"'}


class ModeMismatch(Forbidden):
    code = "mode_mismatch"
    title = "Test and live modes do not mix"


class TenantNotFound(NotFound):
    code = "tenant_not_found"
    title = "Tenant not found"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "API key not found"


class TenantSuspended(Conflict):
    code = "tenant_suspended"
    title = "Tenant suspended"


class ApiKeyLimitReached(Conflict):
    code = "api_key_limit_reached"
    title = "Too many API keys"


class InvalidName(ValidationFailed):
    code = "invalid_name"
    title = "Invalid name"


class InvalidExpiry(ValidationFailed):
    code = "invalid_expiry"
    title = "Invalid expiry"


class LiveOnlyScope(ValidationFailed):
    """A test key asked for a scope only live keys carry (`types.LIVE_ONLY_SCOPES`)."""

    code = "live_only_scope"
    title = "Scope for live keys only"

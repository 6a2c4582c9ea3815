"""End users' typed errors, rendered as problem+json by the kit's handlers.

The hierarchy::

    BillfoldError
    ├── Unauthorized
    │   ├── UserNotAuthenticated      401 unauthorized (+ WWW-Authenticate: Bearer)
    │   ├── InvalidCredentials        401 invalid_credentials (+ the same header)
    │   ├── MfaTokenInvalid           401 mfa_token_invalid (+ the same header)
    │   ├── RefreshTokenInvalid       401 refresh_token_invalid (+ the same header)
    │   └── DeviceSignatureInvalid    401 device_signature_invalid
    ├── Forbidden
    │   └── StepUpRejected            403 step_up_rejected
    ├── NotFound
    │   ├── UserNotFound              404 user_not_found
    │   ├── SessionNotFound           404 session_not_found
    │   ├── DeviceNotFound            404 device_not_found
    │   └── StepUpNotFound            404 step_up_not_found
    ├── Conflict
    │   ├── IdentifierTaken           409 identifier_taken
    │   ├── UserLimitReached          409 user_limit_reached
    │   └── FactorStateConflict       409 factor_state_conflict
    └── ValidationFailed
        ├── InvalidIdentifier         422 invalid_identifier
        ├── WeakPassword              422 weak_password
        ├── InvalidCode               422 invalid_code
        ├── PasskeyRejected           422 passkey_rejected
        └── InvalidDeviceKey          422 invalid_device_key

Some refusals must leave a trace that outlives the request's rollback: a failed login
counts towards the lock, a reused refresh token revokes its family, a wrong step-up answer
is recorded. Those errors carry an :data:`Aftermath` (see :class:`HasAftermath`), which
``billfold.identity.users.work.run_recording_failures`` commits in a unit of work of its own
after the failed one rolled back.
"""

# Errors are named for what went wrong, as HTTP names them, not *Error.

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.errors import (
    BearerTokenRejected,
    BillfoldError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "Aftermath",
    "DeviceNotFound",
    "DeviceSignatureInvalid",
    "FactorStateConflict",
    "HasAftermath",
    "IdentifierTaken",
    "InvalidCode",
    "InvalidCredentials",
    "InvalidDeviceKey",
    "InvalidIdentifier",
    "MfaTokenInvalid",
    "PasskeyRejected",
    "RefreshTokenInvalid",
    "SessionNotFound",
    "StepUpNotFound",
    "StepUpRejected",
    "UserLimitReached",
    "UserNotAuthenticated",
    "UserNotFound",
    "WeakPassword",
    "aftermath_of",
    "with_aftermath",
]

Aftermath: TypeAlias = Callable[[AsyncSession], Awaitable[None]]
"""Bookkeeping for a refusal, run in a fresh unit of work after the request rolled back.
It closes over ids and facts only, never over rows of the rolled-back session."""

_USERS_REALM = 'Bearer realm="billfold-users"'


class HasAftermath:
    """Mixin for errors whose refusal must still be recorded (see the module docstring)."""

    aftermath: Aftermath | None = None


E = TypeVar("E", bound=HasAftermath)


def with_aftermath(error: E, aftermath: Aftermath) -> E:
    """``error``, carrying ``aftermath`` for the caller to commit after its rollback."""
    error.aftermath = aftermath
    return error


def aftermath_of(error: BillfoldError) -> Aftermath | None:
    """The bookkeeping ``error`` carries, if any."""
    return error.aftermath if isinstance(error, HasAftermath) else None


class UserNotAuthenticated(BearerTokenRejected):
    """No valid end-user access token. One fixed message for every cause."""

    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "A valid access token is required in the header 'Authorization: Bearer bfu_at_…'."
        )

    def __reduce__(self) -> tuple[type[UserNotAuthenticated], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _USERS_REALM}


class InvalidCredentials(HasAftermath, Unauthorized):
    """Any failed sign-in step: unknown identifier, wrong password, wrong second factor,
    locked account. One fixed message, so the answer never tells which identifiers exist."""

    code = "invalid_credentials"
    title = "Invalid credentials"

    def __init__(self) -> None:
        super().__init__(
            "The credentials are wrong, or the account is temporarily locked after too many"
            " failed attempts."
        )

    def __reduce__(self) -> tuple[type[InvalidCredentials], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _USERS_REALM}  # every 401 names a scheme (RFC 9110)


class MfaTokenInvalid(Unauthorized):
    """The MFA token is unknown, expired, used or spent its attempts: sign in again."""

    code = "mfa_token_invalid"
    title = "MFA token invalid"

    def __init__(self) -> None:
        super().__init__("The MFA token is invalid or expired; sign in again with the password.")

    def __reduce__(self) -> tuple[type[MfaTokenInvalid], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _USERS_REALM}  # every 401 names a scheme (RFC 9110)


class RefreshTokenInvalid(HasAftermath, Unauthorized):
    """Unknown, expired, revoked or already used: the client must sign in again."""

    code = "refresh_token_invalid"
    title = "Refresh token invalid"

    def __init__(self) -> None:
        super().__init__("The refresh token is invalid, expired or revoked; sign in again.")

    def __reduce__(self) -> tuple[type[RefreshTokenInvalid], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _USERS_REALM}  # every 401 names a scheme (RFC 9110)


class DeviceSignatureInvalid(HasAftermath, Unauthorized):
    """A device signature refused; ``reason`` says why in the security event (never in the
    answer beyond its detail)."""

    code = "device_signature_invalid"
    title = "Device signature invalid"
    reason = "malformed"

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'BillfoldDeviceSignature realm="billfold-users"'}


class StepUpRejected(HasAftermath, Forbidden):
    """A step-up answer or token that does not prove the action at hand."""

    code = "step_up_rejected"
    title = "Step-up authentication rejected"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"


class SessionNotFound(NotFound):
    code = "session_not_found"
    title = "Session not found"


class DeviceNotFound(NotFound):
    code = "device_not_found"
    title = "Device not found"


class StepUpNotFound(NotFound):
    code = "step_up_not_found"
    title = "Step-up not found"


class IdentifierTaken(Conflict):
    code = "identifier_taken"
    title = "Identifier already in use"


class UserLimitReached(Conflict):
    """A per-user bound (devices, passkeys, open step-ups) is reached."""

    code = "user_limit_reached"
    title = "Limit reached"


class FactorStateConflict(Conflict):
    """The factor is not in the state the request needs (already enabled, not pending)."""

    code = "factor_state_conflict"
    title = "Factor state conflict"


class InvalidIdentifier(ValidationFailed):
    code = "invalid_identifier"
    title = "Invalid identifier"


class WeakPassword(ValidationFailed):
    code = "weak_password"
    title = "Password refused"


class InvalidCode(ValidationFailed):
    """A one-time code that does not verify, outside sign-in (enrolment)."""

    code = "invalid_code"
    title = "Invalid code"


class PasskeyRejected(HasAftermath, ValidationFailed):
    """A passkey registration that does not verify; its aftermath closes the challenge."""

    code = "passkey_rejected"
    title = "Passkey rejected"


class InvalidDeviceKey(ValidationFailed):
    code = "invalid_device_key"
    title = "Invalid device key"

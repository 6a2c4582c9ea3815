"""Operators' typed errors, rendered as problem+json by the kit's handlers.

The hierarchy::

    BillfoldError
    ├── Unauthorized
    │   ├── OperatorNotAuthenticated     401 unauthorized (+ WWW-Authenticate: Bearer)
    │   └── LoginFailed                  401 login_failed (+ the same header)
    ├── Forbidden
    │   ├── PermissionDenied             403 permission_denied
    │   ├── PasswordChangeRequired       403 password_change_required
    │   ├── SelfManagementForbidden      403 self_management_forbidden
    │   └── SelfApprovalForbidden        403 self_approval_forbidden
    ├── NotFound
    │   ├── OperatorNotFound             404 operator_not_found
    │   └── ApprovalNotFound             404 approval_not_found
    ├── Conflict
    │   ├── OperatorEmailTaken           409 operator_email_taken
    │   ├── OperatorLimitReached         409 operator_limit_reached
    │   ├── LastAdministrator            409 last_administrator
    │   ├── PendingApprovalLimitReached  409 pending_approval_limit_reached
    │   │   └── RequesterPendingApprovalLimitReached
    │   │                                409 requester_pending_approval_limit_reached
    │   ├── ApprovalAlreadyDecided       409 approval_already_decided
    │   ├── ApprovalExpired              409 approval_expired
    │   ├── RequesterNotPermitted        409 requester_not_permitted
    │   └── HolderNotActive              409 holder_not_active
    ├── ValidationFailed
    │   ├── InvalidEmail                 422 invalid_email
    │   ├── InvalidPassword              422 invalid_password
    │   ├── InvalidRoles                 422 invalid_roles
    │   ├── InvalidNote                  422 invalid_note
    │   ├── InvalidApprovalPayload       422 invalid_approval_payload
    │   └── InvalidApprovalExpiry        422 invalid_approval_expiry
    └── ServiceUnavailable
        └── ApprovalExecutorUnavailable  503 approval_executor_unavailable
"""

# Errors are named for what went wrong, as HTTP names them, not *Error.

from __future__ import annotations

from collections.abc import Mapping

from billfold.kit.errors import (
    BearerTokenRejected,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "ApprovalAlreadyDecided",
    "ApprovalExecutorUnavailable",
    "ApprovalExpired",
    "ApprovalNotFound",
    "HolderNotActive",
    "InvalidApprovalExpiry",
    "InvalidApprovalPayload",
    "InvalidEmail",
    "InvalidNote",
    "InvalidPassword",
    "InvalidRoles",
    "LastAdministrator",
    "LoginFailed",
    "OperatorEmailTaken",
    "OperatorLimitReached",
    "OperatorNotAuthenticated",
    "OperatorNotFound",
    "PasswordChangeRequired",
    "PendingApprovalLimitReached",
    "PermissionDenied",
    "RequesterNotPermitted",
    "RequesterPendingApprovalLimitReached",
    "SelfApprovalForbidden",
    "SelfManagementForbidden",
]


_OPERATORS_REALM = 'Bearer realm="billfold-operators"'


class OperatorNotAuthenticated(BearerTokenRejected):
    """No valid operator session: missing, malformed, unknown, expired, revoked, or of a
    disabled operator or suspended tenant. One fixed message for all, so probing tokens
    reveals nothing about which case it hit."""

    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "A valid operator session is required in the header 'Authorization: Bearer bfo_…'."
        )

    def __reduce__(self) -> tuple[type[OperatorNotAuthenticated], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _OPERATORS_REALM}


class LoginFailed(Unauthorized):
    """Wrong email or password, a disabled operator or a locked sign-in: one message, so a
    caller cannot learn which addresses exist."""

    code = "login_failed"
    title = "Sign-in failed"

    def __init__(self) -> None:
        super().__init__("The email or password is wrong, or sign-in is not possible now.")

    def __reduce__(self) -> tuple[type[LoginFailed], tuple[()]]:
        return (type(self), ())

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": _OPERATORS_REALM}  # RFC 9110: every 401 names a scheme


class PermissionDenied(Forbidden):
    """Raised with the extension ``required_permission``."""

    code = "permission_denied"
    title = "Permission denied"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"
    title = "Change the one-time password first"


class SelfManagementForbidden(Forbidden):
    code = "self_management_forbidden"
    title = "Operators cannot change their own roles or status"


class SelfApprovalForbidden(Forbidden):
    code = "self_approval_forbidden"
    title = "The requester cannot decide their own request"


class OperatorNotFound(NotFound):
    code = "operator_not_found"
    title = "Operator not found"


class ApprovalNotFound(NotFound):
    code = "approval_not_found"
    title = "Approval request not found"


class OperatorEmailTaken(Conflict):
    code = "operator_email_taken"
    title = "An operator of this tenant already has this email"


class OperatorLimitReached(Conflict):
    code = "operator_limit_reached"
    title = "Too many operators"


class LastAdministrator(Conflict):
    code = "last_administrator"
    title = "The tenant's last active administrator must stay"


class PendingApprovalLimitReached(Conflict):
    """Raised with the extension ``limit``: the tenant's pending requests."""

    code = "pending_approval_limit_reached"
    title = "Too many pending approval requests"


class RequesterPendingApprovalLimitReached(PendingApprovalLimitReached):
    """Raised with the extension ``limit``: the caller's own pending requests. A cap of its
    own, below the tenant's, so that one operator cannot fill the tenant's and block every
    other operator's requests."""

    code = "requester_pending_approval_limit_reached"
    title = "Too many pending approval requests by this operator"


class ApprovalAlreadyDecided(Conflict):
    """Raised with the extension ``approval_status``: what the request is now."""

    code = "approval_already_decided"
    title = "The request was already decided"


class ApprovalExpired(Conflict):
    code = "approval_expired"
    title = "The request expired undecided"


class RequesterNotPermitted(Conflict):
    """Raised with the extension ``requested_by``: the requester has been disabled, or no
    longer holds the permission to ask for this action, since the request was made."""

    code = "requester_not_permitted"
    title = "The requester may no longer ask for this action"


class HolderNotActive(Conflict):
    """Raised with the extensions ``subject_id`` and ``holder_status``: a limit increase for
    an end user who is not active (disabled; erasure disables a user too)."""

    code = "holder_not_active"
    title = "The end user is not active"


class InvalidEmail(ValidationFailed):
    code = "invalid_email"
    title = "Invalid email address"


class InvalidPassword(ValidationFailed):
    code = "invalid_password"
    title = "Password not acceptable"


class InvalidRoles(ValidationFailed):
    code = "invalid_roles"
    title = "Invalid roles"


class InvalidNote(ValidationFailed):
    code = "invalid_note"
    title = "Invalid reason or note"


class InvalidApprovalPayload(ValidationFailed):
    code = "invalid_approval_payload"
    title = "Invalid approval payload"


class InvalidApprovalExpiry(ValidationFailed):
    code = "invalid_approval_expiry"
    title = "Invalid approval expiry"


class ApprovalExecutorUnavailable(ServiceUnavailable):
    """The application was started without an executor for this action type."""

    code = "approval_executor_unavailable"
    title = "This action cannot be executed by this server"

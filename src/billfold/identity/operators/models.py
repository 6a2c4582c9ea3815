"""Operators' tables. Only ``billfold.identity.operators`` writes them.

Times are integer nanoseconds since the Unix epoch, like every other identity table.
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "APPROVAL_STATUSES",
    "DISPLAY_NAME_LENGTH_MAX",
    "EMAIL_LENGTH_MAX",
    "NOTE_LENGTH_MAX",
    "PASSWORD_HASH_LENGTH_MAX",
    "PAYLOAD_LENGTH_MAX",
    "ApprovalRequest",
    "ApprovedChange",
    "Operator",
    "OperatorSession",
]

EMAIL_LENGTH_MAX = 254
"""RFC 5321's limit on a forward path, the longest address that can receive mail."""
DISPLAY_NAME_LENGTH_MAX = 200
PASSWORD_HASH_LENGTH_MAX = 200
"""An Argon2id PHC string with our parameters is about 100 characters."""
ROLES_LENGTH_MAX = 100
NOTE_LENGTH_MAX = 500
PAYLOAD_LENGTH_MAX = 4_000
"""Bytes of JSON an approval request's payload may take: small facts, never documents."""
APPROVAL_STATUSES = ("pending", "approved", "refused", "expired", "executed", "failed")


class Operator(Base):
    """A person in a tenant's back office, who signs in with email and password."""

    __tablename__ = "identity_operators"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `opr_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The tenant whose back office the operator works in; never changes."""
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX))
    """Lowercased sign-in address, unique within the tenant."""
    display_name: Mapped[str] = mapped_column(String(DISPLAY_NAME_LENGTH_MAX))
    """What colleagues see, in approvals and audit views."""
    roles: Mapped[str] = mapped_column(String(ROLES_LENGTH_MAX))
    """Role values, sorted and separated by single spaces; at least one."""
    status: Mapped[str] = mapped_column(String(16))
    """active or disabled; a disabled operator signs in to nothing."""
    password_hash: Mapped[str] = mapped_column(String(PASSWORD_HASH_LENGTH_MAX))
    """Argon2id PHC string; the password itself is never stored."""
    password_change_required: Mapped[bool] = mapped_column(Boolean)
    """True while the password is a one-time one someone else saw."""
    failed_login_count: Mapped[int] = mapped_column(Integer)
    """Consecutive failed sign-ins; reset by a successful one."""
    locked_until: Mapped[int | None] = mapped_column(BigInteger)
    """Sign-in is refused until then after too many failures, ns since the epoch."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the operator was created, ns since the epoch."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When roles, status or password last changed, ns since the epoch."""

    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_identity_operators_tenant_id_email"),
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        # Listing walks one tenant's operators in id (creation) order.
        Index("ix_identity_operators_tenant_id_id", "tenant_id", "id"),
    )


class OperatorSession(Base):
    """A signed-in operator's short-lived bearer token, stored as a hash only."""

    __tablename__ = "identity_operator_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7, encoded inside the token so lookup is by primary key."""
    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_operators.id"))
    """Who signed in."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The operator's tenant, copied so a session is checked without a join."""
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of the whole token (256 random bits: a fast hash loses nothing)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the operator signed in, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """When the token stops working, ns since the epoch; never extended."""
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was signed out or revoked, ns since the epoch; NULL while it is not."""

    __table_args__ = (
        Index("ix_identity_operator_sessions_operator_id_expires_at", "operator_id", "expires_at"),
    )


class ApprovalRequest(Base):
    """A sensitive action one operator asked for and a different one must decide."""

    __tablename__ = "identity_approval_requests"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `apr_<hex>` in the API, and the idempotency key of what it executes."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The tenant the action is for."""
    action_type: Mapped[str] = mapped_column(String(32))
    """An ActionType value."""
    payload: Mapped[str] = mapped_column(Text)
    """The action's parameters as canonical JSON, validated for the action type."""
    reason: Mapped[str] = mapped_column(String(NOTE_LENGTH_MAX))
    """Why the requester asks for it, shown to the approver."""
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_operators.id"))
    """The operator who asked."""
    status: Mapped[str] = mapped_column(String(16))
    """pending, then approved (executing), refused or expired; approved, then executed or
    failed. Each step is a conditional UPDATE on the previous status."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was asked for, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """A pending request cannot be decided from then on, ns since the epoch."""
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("identity_operators.id"))
    """The operator who approved or refused it; never the requester (a CHECK says so too)."""
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was approved, refused or found expired, ns since the epoch."""
    decision_note: Mapped[str | None] = mapped_column(String(NOTE_LENGTH_MAX))
    """The decider's words: required to refuse, optional to approve."""
    executed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When its execution finished (executed or failed), ns since the epoch."""
    result: Mapped[str | None] = mapped_column(Text)
    """What execution produced (a transfer id, a failure code), as JSON."""

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'approved', 'refused', 'expired', 'executed', 'failed')",
            name="status",
        ),
        CheckConstraint(
            "action_type IN ('ledger_adjustment', 'account_unfreeze', 'limit_increase',"
            " 'key_rotation', 'risk_rule_change', 'risk_response_reversal',"
            " 'risk_model_promotion', 'tier_limits_change')",
            name="action_type",
        ),
        # Four eyes, guarded twice: in the service and here, where no code path can skip it.
        CheckConstraint(
            "decided_by IS NULL OR decided_by <> requested_by", name="decider_is_not_requester"
        ),
        Index("ix_identity_approval_requests_tenant_id_id", "tenant_id", "id"),
        Index("ix_identity_approval_requests_status_expires_at", "status", "expires_at"),
    )


class ApprovedChange(Base):
    """An approved change whose owning domain (limits, keys) will apply it.

    Those domains do not exist yet: until they do, an approved limit increase or key rotation
    is recorded here, with ``applied_at`` NULL, and has no other effect.
    """

    __tablename__ = "identity_approved_changes"

    approval_id: Mapped[uuid.UUID] = mapped_column(
        # Named explicitly: the conventional name would pass PostgreSQL's 63 characters.
        ForeignKey(
            "identity_approval_requests.id", name="fk_identity_approved_changes_approval_id"
        ),
        primary_key=True,
    )
    """The approval that allowed it; the primary key, so a request records at most one."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The tenant the change is for."""
    action_type: Mapped[str] = mapped_column(String(32))
    """limit_increase or key_rotation."""
    payload: Mapped[str] = mapped_column(Text)
    """The approved parameters, as the request had them."""
    recorded_at: Mapped[int] = mapped_column(BigInteger)
    """When the approval recorded it, ns since the epoch."""
    applied_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the owning domain applied it, ns since the epoch; NULL until one does."""

    __table_args__ = (
        Index("ix_identity_approved_changes_applied_at_action_type", "applied_at", "action_type"),
    )

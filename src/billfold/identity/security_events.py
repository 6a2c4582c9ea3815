"""The append-only security event log: every login, MFA enrolment, key, device and approval
event. Rows are never updated or deleted (database triggers refuse it);
`record_security_event` is the only writer, and it appends each event to the tenant's
hash-chained audit log (`billfold.audit`) in the same transaction.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping

from sqlalchemy import BigInteger, Index, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from billfold.audit import service as audit
from billfold.kit.errors import invariant
from billfold.kit.ids import new_id
from billfold.kit.orm import Base

__all__ = [
    "DETAIL_LENGTH_MAX",
    "ActorType",
    "SecurityEvent",
    "SecurityEventType",
    "list_security_events",
    "record_security_event",
]

DETAIL_LENGTH_MAX = 4_000
"""Bytes of JSON detail kept per event; details are small facts, never secrets."""
EVENTS_LISTED_MAX = 500


class ActorType(enum.StrEnum):
    API_KEY = "api_key"
    OPERATOR = "operator"
    USER = "user"
    SYSTEM = "system"


class SecurityEventType(enum.StrEnum):
    """Stable names: consumers (the audit log, alerting) branch on them."""

    TENANT_CREATED = "tenant.created"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    OPERATOR_CREATED = "operator.created"
    OPERATOR_ROLE_CHANGED = "operator.role_changed"
    OPERATOR_DISABLED = "operator.disabled"
    OPERATOR_ENABLED = "operator.enabled"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_REFUSED = "approval.refused"
    USER_SIGNED_UP = "user.signed_up"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    MFA_ENROLLED = "mfa.enrolled"
    MFA_FAILED = "mfa.failed"
    RECOVERY_CODE_USED = "mfa.recovery_code_used"
    PASSKEY_REGISTERED = "passkey.registered"
    DEVICE_BOUND = "device.bound"
    DEVICE_REVOKED = "device.revoked"
    DEVICE_SIGNATURE_FAILED = "device_signature.failed"
    SESSIONS_REVOKED = "sessions.revoked"
    REFRESH_TOKEN_REUSED = "refresh_token.reused"  # noqa: S105 (an event name)
    REFRESH_FAILED = "refresh.failed"
    STEP_UP_ISSUED = "step_up.issued"
    STEP_UP_VERIFIED = "step_up.verified"
    STEP_UP_FAILED = "step_up.failed"
    # Keys and privacy (billfold.keys, billfold.privacy).
    KEY_ROTATED = "key.rotated"
    KEY_REWRAPPED = "key.rewrapped"
    KEY_RETIRED = "key.retired"
    SIGNING_KEY_ROTATED = "signing_key.rotated"
    SIGNING_KEY_RETIRED = "signing_key.retired"
    PII_REVEALED = "pii.revealed"
    PII_DETOKENIZED = "pii.detokenized"
    PII_DETOKENIZE_FAILED = "pii.detokenize_failed"
    PII_EXPORTED = "pii.exported"
    PII_ERASED = "pii.erased"
    CONSENT_GRANTED = "consent.granted"
    CONSENT_WITHDRAWN = "consent.withdrawn"


class SecurityEvent(Base):
    """One security-relevant fact. Append-only."""

    __tablename__ = "identity_security_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7: the order events were recorded in, within a process."""
    tenant_id: Mapped[uuid.UUID | None]
    """The tenant concerned; NULL for platform-level events."""
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    """When it happened, ns since the epoch."""
    event_type: Mapped[str] = mapped_column(String(64))
    """A SecurityEventType value."""
    actor_type: Mapped[str] = mapped_column(String(16))
    """Who acted: api_key, operator, user or system."""
    actor_id: Mapped[str | None] = mapped_column(String(64))
    """The acting credential or person, as a public id; NULL when unknown (failed login)."""
    subject_id: Mapped[str | None] = mapped_column(String(64))
    """What it was done to, as a public id, when that differs from the actor."""
    detail: Mapped[str] = mapped_column(Text)
    """Small JSON object of facts (never secrets), at most DETAIL_LENGTH_MAX bytes."""

    __table_args__ = (
        Index("ix_identity_security_events_tenant_id_occurred_at", "tenant_id", "occurred_at"),
        # A user's recent failures (risk features: failed_logins_24h) are one range scan.
        Index(
            "ix_identity_security_events_tenant_subject_occurred",
            "tenant_id",
            "subject_id",
            "occurred_at",
        ),
    )


async def record_security_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    event_type: SecurityEventType,
    actor_type: ActorType,
    actor_id: str | None,
    occurred_at: int,
    subject_id: str | None = None,
    detail: Mapping[str, str | int | bool | None] | None = None,
    before: Mapping[str, str | int | bool | None] | None = None,
    after: Mapping[str, str | int | bool | None] | None = None,
) -> SecurityEvent:
    """Add one event to the session and to the audit log (flushed; the caller's unit of
    work commits both, so they and the change they describe land together or not at all).
    ``before`` and ``after`` describe a configuration change; they go to the audit log."""
    text = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))
    invariant(len(text.encode()) <= DETAIL_LENGTH_MAX, "security event detail is bounded")
    event = SecurityEvent(
        id=new_id(),
        tenant_id=tenant_id,
        occurred_at=occurred_at,
        event_type=event_type.value,
        actor_type=actor_type.value,
        actor_id=actor_id,
        subject_id=subject_id,
        detail=text,
    )
    session.add(event)
    await session.flush()
    await audit.append(
        session,
        tenant_id=tenant_id,
        action=event_type.value,
        occurred_at=occurred_at,
        actor_type=actor_type.value,
        actor_id=actor_id,
        target=subject_id,
        before=before,
        after=after,
        detail=detail,
    )
    return event


async def list_security_events(
    session: AsyncSession, *, tenant_id: uuid.UUID, limit: int
) -> list[SecurityEvent]:
    """A tenant's most recent events, newest first."""
    invariant(1 <= limit <= EVENTS_LISTED_MAX, "listing is bounded")
    statement = (
        select(SecurityEvent)
        .where(SecurityEvent.tenant_id == tenant_id)
        .order_by(SecurityEvent.occurred_at.desc(), SecurityEvent.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())

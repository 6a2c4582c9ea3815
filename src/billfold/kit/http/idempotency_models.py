"""The `idempotency_keys` table: one row per (scope, key), holding the first request's
fingerprint and, once it finished, its response for replay."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, CheckConstraint, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "FINGERPRINT_LENGTH",
    "IDEMPOTENCY_KEY_LENGTH_MAX",
    "IDEMPOTENCY_SCOPE_LENGTH_MAX",
    "STATUS_COMPLETED",
    "STATUS_IN_PROGRESS",
    "IdempotencyKey",
]

IDEMPOTENCY_KEY_LENGTH_MAX = 255
IDEMPOTENCY_SCOPE_LENGTH_MAX = 255
FINGERPRINT_LENGTH = 64
"""Hex digits of a SHA-256."""
STATUS_IN_PROGRESS = "in_progress"
STATUS_COMPLETED = "completed"


class IdempotencyKey(Base):
    """A client's idempotency key and what the first request with it produced."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(IDEMPOTENCY_SCOPE_LENGTH_MAX), primary_key=True)
    """Whose key it is (tenant and credential); opaque here, chosen by the caller."""
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH_MAX), primary_key=True)
    """The `Idempotency-Key` header: printable ASCII, 1..255 characters."""
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    """SHA-256 (hex) of the first request's method, path, query and body."""
    status: Mapped[str] = mapped_column(String(12))
    """in_progress while the first request runs, completed once its response is stored."""
    attempt_id: Mapped[str] = mapped_column(String(32))
    """Which execution holds the key; only it may complete or abandon the row."""
    locked_until: Mapped[int] = mapped_column(BigInteger)
    """While in_progress: until when (ns since the epoch) others get 409; after it, a retry
    may take the key over (the first request's process died)."""
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    """The stored response's HTTP status."""
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    """The stored response's replayed headers (content-type, location, allow,
    www-authenticate, accept) as [name, value]."""
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The stored response's body, bounded by the store's response_body_max_bytes."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the key was first used, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    """When the key may be purged (at least 24 hours after created_at), ns since the epoch."""

    __table_args__ = (
        CheckConstraint(f"status IN ('{STATUS_IN_PROGRESS}', '{STATUS_COMPLETED}')", name="status"),
    )

"""Privacy's tables: the PII vault, card and bank account tokens, consent records.

Only ``billfold.privacy`` writes them. Every personal value is an envelope ciphertext
(``billfold.keys``) bound to its tenant, table, column and row; search goes through keyed
blind indexes (HMAC-SHA-256 under a per-tenant key), never through decryption. Users are
referenced by id (``identity_users.id``), without a foreign key across the boundary.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "BLIND_INDEX_BYTES",
    "CIPHERTEXT_BYTES_MAX",
    "Consent",
    "PiiValue",
    "Token",
]

BLIND_INDEX_BYTES = 32
"""HMAC-SHA-256."""
CIPHERTEXT_BYTES_MAX = 2_048
"""The largest PII value (an address, 1,000 UTF-8 bytes at most) plus the envelope."""
TOKEN_LENGTH_MAX = 34
CONSENT_PURPOSE_LENGTH_MAX = 64
CONSENT_VERSION_LENGTH_MAX = 32


class PiiValue(Base):
    """One personal field of one end user, encrypted under that user's data key."""

    __tablename__ = "privacy_pii_values"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    tenant_id: Mapped[uuid.UUID]
    """The user's tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live, as the user's."""
    user_id: Mapped[uuid.UUID]
    """The end user (identity_users.id) the value belongs to."""
    field: Mapped[str] = mapped_column(String(16))
    """name, email, phone, national_id, address or bank_account."""
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary(CIPHERTEXT_BYTES_MAX))
    """Envelope ciphertext; associated data (tenant, privacy_pii_values, field, user id)."""
    blind_index: Mapped[bytes | None] = mapped_column(LargeBinary(BLIND_INDEX_BYTES))
    """HMAC of the normalized value for exact-match search; NULL for unsearchable fields."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("uq_privacy_pii_values_user_id_field", "user_id", "field", unique=True),
        Index(
            "ix_privacy_pii_values_tenant_id_mode_field_blind_index",
            "tenant_id",
            "mode",
            "field",
            "blind_index",
        ),
    )


class Token(Base):
    """A surrogate for a card number (PAN) or bank account number."""

    __tablename__ = "privacy_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `tok_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID]
    """The tenant that tokenized it."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    kind: Mapped[str] = mapped_column(String(16))
    """pan or bank_account."""
    token: Mapped[str] = mapped_column(String(TOKEN_LENGTH_MAX))
    """The surrogate: same length, last four digits kept, Luhn-valid for a PAN."""
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary(CIPHERTEXT_BYTES_MAX))
    """The real value, envelope-encrypted (purpose tokens)."""
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(BLIND_INDEX_BYTES))
    """HMAC of the value: the same value gets the same token."""
    last4: Mapped[str] = mapped_column(String(4))
    """The last four characters, shown in masked form."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("kind IN ('pan', 'bank_account')", name="kind"),
        Index(
            "uq_privacy_tokens_tenant_id_mode_kind_token",
            "tenant_id",
            "mode",
            "kind",
            "token",
            unique=True,
        ),
        Index(
            "uq_privacy_tokens_tenant_id_mode_kind_fingerprint",
            "tenant_id",
            "mode",
            "kind",
            "fingerprint",
            unique=True,
        ),
    )


class Consent(Base):
    """A user's consent to one purpose at one version of its terms."""

    __tablename__ = "privacy_consents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `cns_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID]
    """The user's tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    user_id: Mapped[uuid.UUID]
    """The end user (identity_users.id)."""
    purpose: Mapped[str] = mapped_column(String(CONSENT_PURPOSE_LENGTH_MAX))
    """What the data may be used for: marketing, analytics, ..."""
    version: Mapped[str] = mapped_column(String(CONSENT_VERSION_LENGTH_MAX))
    """The version of the terms the user agreed to."""
    granted_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""
    withdrawn_at: Mapped[int | None] = mapped_column(BigInteger)
    """ns since the epoch; NULL while in force."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("ix_privacy_consents_user_id_purpose", "user_id", "purpose"),
    )

"""The key hierarchy's tables. Only ``billfold.keys`` writes them.

Root key (keystore) → key-encryption keys (``keys_encryption_keys``, versioned per tenant
and purpose, wrapped by the root key) → data keys (``keys_data_keys``, wrapped by one
version of their tenant's and purpose's key-encryption key). Ed25519 signing keys
(``keys_signing_keys``) keep their private half encrypted like any field. No key is
stored in the clear. Times are integer nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "OWNER_LENGTH_MAX",
    "PURPOSE_LENGTH_MAX",
    "DataKey",
    "KeyEncryptionKey",
    "SigningKey",
]

PURPOSE_LENGTH_MAX = 32
OWNER_LENGTH_MAX = 64
SLOT_LENGTH_MAX = 16
KEYSTORE_KEY_ID_LENGTH_MAX = 128
WRAPPED_KEY_BYTES_MAX = 256


class KeyEncryptionKey(Base):
    """One version of a tenant's key-encryption key for one purpose."""

    __tablename__ = "keys_encryption_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    tenant_id: Mapped[uuid.UUID]
    """The tenant; the nil UUID for platform keys (no foreign key, so that one fits)."""
    purpose: Mapped[str] = mapped_column(String(PURPOSE_LENGTH_MAX))
    """What the keys below it protect: pii, tokens, signing, ..."""
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, 3, ... per (tenant, purpose); the highest non-retired one is active."""
    status: Mapped[str] = mapped_column(String(16))
    """active (wraps new data keys), decrypt_only (unwraps old ones) or retired (gone)."""
    keystore_key_id: Mapped[str] = mapped_column(String(KEYSTORE_KEY_ID_LENGTH_MAX))
    """The root key that wrapped it."""
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(WRAPPED_KEY_BYTES_MAX))
    """nonce | AES-256-GCM(key) under the root key; NULL once retired."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the version was created, ns since the epoch."""
    retired_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was retired, ns since the epoch."""

    __table_args__ = (
        CheckConstraint("status IN ('active', 'decrypt_only', 'retired')", name="status"),
        CheckConstraint("version >= 1", name="version"),
        Index(
            "uq_keys_encryption_keys_tenant_id_purpose_version",
            "tenant_id",
            "purpose",
            "version",
            unique=True,
        ),
    )


class DataKey(Base):
    """A data key, wrapped by one key-encryption key version; destroyed to crypto-shred."""

    __tablename__ = "keys_data_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; named in the header of every ciphertext it made."""
    tenant_id: Mapped[uuid.UUID]
    """The tenant (nil UUID for the platform)."""
    purpose: Mapped[str] = mapped_column(String(PURPOSE_LENGTH_MAX))
    """Its key-encryption key's purpose."""
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH_MAX))
    """Whose data it protects (`usr_…` for a user's PII, `tenant` for shared keys)."""
    slot: Mapped[str] = mapped_column(String(SLOT_LENGTH_MAX))
    """`v<N>`: the owner's key for new data under version N; `stable`: never replaced."""
    kek_version: Mapped[int] = mapped_column(Integer)
    """The key-encryption key version that wraps it now (rewrap moves it up)."""
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(WRAPPED_KEY_BYTES_MAX))
    """nonce | AES-256-GCM(key) under that version; NULL once destroyed."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""
    destroyed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was destroyed (crypto-shredding), ns since the epoch."""

    __table_args__ = (
        Index(
            "uq_keys_data_keys_tenant_id_purpose_owner_slot",
            "tenant_id",
            "purpose",
            "owner",
            "slot",
            unique=True,
        ),
        Index(
            "ix_keys_data_keys_tenant_id_purpose_kek_version", "tenant_id", "purpose", "kek_version"
        ),
        Index("ix_keys_data_keys_tenant_id_owner", "tenant_id", "owner"),
    )


class SigningKey(Base):
    """One version of an Ed25519 signing key; the private key encrypted, the public in clear."""

    __tablename__ = "keys_signing_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `sig_<hex>` is the JWKS `kid`."""
    tenant_id: Mapped[uuid.UUID]
    """The tenant (nil UUID for platform keys, published at /.well-known/jwks.json)."""
    purpose: Mapped[str] = mapped_column(String(PURPOSE_LENGTH_MAX))
    """What it signs: audit, webhooks, ..."""
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, 3, ... per (tenant, purpose)."""
    status: Mapped[str] = mapped_column(String(16))
    """active (signs), verify_only (published, no longer signs) or retired (unpublished)."""
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The raw 32-byte Ed25519 public key."""
    encrypted_private_key: Mapped[bytes | None] = mapped_column(LargeBinary(WRAPPED_KEY_BYTES_MAX))
    """The 32-byte seed, envelope-encrypted (purpose `signing`); NULL once retired."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """ns since the epoch."""
    retired_at: Mapped[int | None] = mapped_column(BigInteger)
    """ns since the epoch."""

    __table_args__ = (
        CheckConstraint("status IN ('active', 'verify_only', 'retired')", name="status"),
        Index(
            "uq_keys_signing_keys_tenant_id_purpose_version",
            "tenant_id",
            "purpose",
            "version",
            unique=True,
        ),
    )

"""Identity's tables: tenants and their API keys. Only `billfold.identity` writes them.

Times are integer nanoseconds since the Unix epoch, like the ledger's, so they compare
exactly on both backends and come from the same `kit.clock`.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billfold.kit.orm import Base, metadata

__all__ = [
    "API_KEY_NAME_LENGTH_MAX",
    "SECRET_HASH_BYTES",
    "TENANT_NAME_LENGTH_MAX",
    "ApiKey",
    "Tenant",
    "metadata",
]

TENANT_NAME_LENGTH_MAX = 200
SCOPES_LENGTH_MAX = 1000
API_KEY_NAME_LENGTH_MAX = 100
SECRET_HASH_BYTES = 32
"""SHA-256 digest size."""


class Tenant(Base):
    """A platform operator running its own wallet: every other row belongs to one."""

    __tablename__ = "identity_tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `ten_<hex>` in the API."""
    name: Mapped[str] = mapped_column(String(TENANT_NAME_LENGTH_MAX))
    """Display name, chosen at creation."""
    status: Mapped[str] = mapped_column(String(16))
    """active or suspended; a suspended tenant's keys authenticate nothing."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the tenant was created, ns since the epoch."""

    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)


class ApiKey(Base):
    """A tenant's credential for one mode. The secret itself is never stored, only its hash."""

    __tablename__ = "identity_api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `key_<hex>` in the API, and encoded inside the key so lookup needs no scan."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The tenant the key acts for."""
    name: Mapped[str] = mapped_column(String(API_KEY_NAME_LENGTH_MAX))
    """What the tenant calls the key, to tell keys apart."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live: which data the key may touch."""
    scopes: Mapped[str] = mapped_column(String(SCOPES_LENGTH_MAX))
    """The granted scopes, sorted and separated by single spaces (every scope there is fits,
    with room for the domains still to come)."""
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(SECRET_HASH_BYTES))
    """SHA-256 of the whole key; the key itself is shown once and never stored."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the key was created, ns since the epoch."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the key stops working, ns since the epoch; NULL for never."""
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the key was revoked, ns since the epoch; NULL while it is not."""
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the key last authenticated a request (to the minute), ns since the epoch."""

    tenant: Mapped[Tenant] = relationship(lazy="raise")
    """The owning tenant; load it explicitly (lazy loading raises)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        # Listing walks one tenant's keys of one mode in id (creation) order.
        Index("ix_identity_api_keys_tenant_id_mode_id", "tenant_id", "mode", "id"),
    )

"""The audit log's tables. Only ``billfold.audit`` writes them.

Entries and checkpoints are append-only: the database refuses UPDATE and DELETE on them
(triggers, migration 0007). The chain head row is the one mutable row per chain: the lock
appenders take, and a pointer to the last entry and the last checkpoint.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "ACTION_LENGTH_MAX",
    "ACTOR_ID_LENGTH_MAX",
    "ACTOR_TYPE_LENGTH_MAX",
    "JSON_LENGTH_MAX",
    "KEY_ID_LENGTH_MAX",
    "SOURCE_IP_LENGTH_MAX",
    "TARGET_LENGTH_MAX",
    "USER_AGENT_LENGTH_MAX",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
]

ACTOR_TYPE_LENGTH_MAX = 16
ACTOR_ID_LENGTH_MAX = 64
ACTION_LENGTH_MAX = 64
TARGET_LENGTH_MAX = 128
SOURCE_IP_LENGTH_MAX = 45
"""The longest textual IPv6 address (with an embedded IPv4 part)."""
USER_AGENT_LENGTH_MAX = 256
JSON_LENGTH_MAX = 8_000
"""Bytes of JSON in one before, after or detail field: small facts, never documents."""
KEY_ID_LENGTH_MAX = 64


class AuditChainHead(Base):
    """Where a chain stands: its last entry and its last checkpoint. Appenders lock it."""

    __tablename__ = "audit_chain_heads"

    chain_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The tenant's id, or the nil UUID for the platform chain."""
    tenant_id: Mapped[uuid.UUID | None]
    """The tenant; NULL for the platform chain."""
    sequence: Mapped[int] = mapped_column(BigInteger)
    """The last entry's sequence; 0 while the chain is empty."""
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The last entry's hash; 32 zero bytes while the chain is empty."""
    checkpoint_number: Mapped[int] = mapped_column(BigInteger)
    """The last checkpoint's number; 0 before the first."""
    checkpoint_sequence: Mapped[int] = mapped_column(BigInteger)
    """The last sequence a checkpoint covers; 0 before the first."""
    checkpoint_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The last checkpoint's hash; 32 zero bytes before the first."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When the row last changed, ns since the epoch."""


class AuditEntry(Base):
    """One audited act, linked to the one before it by hash. Append-only."""

    __tablename__ = "audit_entries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `aud_<hex>` in the API."""
    chain_id: Mapped[uuid.UUID]
    """The chain: the tenant's id, or the nil UUID for platform events."""
    sequence: Mapped[int] = mapped_column(BigInteger)
    """Position in the chain, from 1, without gaps."""
    tenant_id: Mapped[uuid.UUID | None]
    """The tenant concerned; NULL for platform events."""
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    """When it happened, ns since the epoch."""
    actor_type: Mapped[str | None] = mapped_column(String(ACTOR_TYPE_LENGTH_MAX))
    """Who acted: api_key, operator, user or system."""
    actor_id: Mapped[str | None] = mapped_column(String(ACTOR_ID_LENGTH_MAX))
    """The acting credential or person as a public id; NULL when unknown."""
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH_MAX))
    """What was done, a stable dotted name (`api_key.created`, `approval.executed`)."""
    target: Mapped[str | None] = mapped_column(String(TARGET_LENGTH_MAX))
    """What it was done to, as a public id."""
    source_ip: Mapped[str | None] = mapped_column(String(SOURCE_IP_LENGTH_MAX))
    """The client address of the request that caused it, when there was one."""
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH_MAX))
    """The request's User-Agent, truncated."""
    before: Mapped[str | None] = mapped_column(Text)
    """Canonical JSON of the configuration before the change, for changes."""
    after: Mapped[str | None] = mapped_column(Text)
    """Canonical JSON of the configuration after the change, for changes."""
    detail: Mapped[str | None] = mapped_column(Text)
    """Canonical JSON of other facts (never secrets)."""
    previous_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The entry hash of sequence - 1 (32 zero bytes for the first)."""
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of the canonical encoding (`billfold.audit.encoding`)."""

    __table_args__ = (UniqueConstraint("chain_id", "sequence"),)


class AuditCheckpoint(Base):
    """A signed Merkle root over a chain's entries since the previous checkpoint."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `ckp_<hex>` in the API."""
    chain_id: Mapped[uuid.UUID]
    """The chain it covers."""
    tenant_id: Mapped[uuid.UUID | None]
    """The chain's tenant; NULL for the platform chain."""
    number: Mapped[int] = mapped_column(BigInteger)
    """1, 2, 3, ... within the chain."""
    first_sequence: Mapped[int] = mapped_column(BigInteger)
    """The first entry covered (the previous checkpoint's last + 1)."""
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    """The last entry covered."""
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """RFC 9162 Merkle root over the covered entries' leaves, in sequence order."""
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The entry hash of `last_sequence`."""
    previous_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The previous checkpoint's hash; 32 zero bytes for number 1."""
    checkpoint_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of the signed message."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was made, ns since the epoch."""
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH_MAX))
    """The signing key's id."""
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The raw Ed25519 public key, for convenience: verifiers pin their own copy."""
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    """Ed25519 over the checkpoint message."""

    __table_args__ = (UniqueConstraint("chain_id", "number"),)

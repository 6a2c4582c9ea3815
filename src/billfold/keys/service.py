"""Key lifecycle decisions: rotate, report, rewrap, retire. Never commits: the caller's unit
of work does, so each change and its security event land together or not at all.

A rotation makes a new key-encryption key version active (new data keys are wrapped by
it) and leaves the previous one decrypt-only. `rewrap_batch` moves data keys wrapped by
older versions under the active one without touching the data they encrypt. A version is
retired (its wrapped bytes erased) only once it wraps no live data key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import ActorType, SecurityEventType, record_security_event
from billfold.keys.errors import (
    ConcurrentRotation,
    KeyVersionActive,
    KeyVersionInUse,
    KeyVersionNotFound,
)
from billfold.keys.keyring import PLATFORM_TENANT_ID, Keyring, check_purpose
from billfold.keys.models import KeyEncryptionKey
from billfold.keys.repository import REWRAP_BATCH_MAX, KeyRepository
from billfold.kit.errors import invariant

__all__ = [
    "KeyActor",
    "PurposeStatus",
    "RewrapProgress",
    "VersionStatus",
    "key_status",
    "list_key_statuses",
    "record_rewrap",
    "retire_version",
    "rewrap_batch",
    "rotate",
]


@dataclass(frozen=True, slots=True)
class KeyActor:
    """Who changes keys, for the security event: an operator at the command line is
    `system`/`cli`; an API key or operator when done over HTTP."""

    actor_type: ActorType = ActorType.SYSTEM
    actor_id: str | None = "cli"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    status: str
    data_keys: int
    """Live data keys this version wraps now."""
    created_at_ns: int
    retired_at_ns: int | None


@dataclass(frozen=True, slots=True)
class PurposeStatus:
    tenant_id: uuid.UUID
    purpose: str
    versions: list[VersionStatus]

    @property
    def active_version(self) -> int | None:
        return next((v.version for v in self.versions if v.status == "active"), None)

    @property
    def pending_rewrap(self) -> int:
        """Live data keys wrapped by an older version than the active one."""
        active = self.active_version
        return sum(v.data_keys for v in self.versions if active is None or v.version < active)


def _event_tenant(tenant_id: uuid.UUID) -> uuid.UUID | None:
    return None if tenant_id == PLATFORM_TENANT_ID else tenant_id


async def rotate(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID,
    purpose: str,
    actor: KeyActor,
    now_ns: int,
) -> KeyEncryptionKey:
    """Make a new version active; the previous active one becomes decrypt-only."""
    check_purpose(purpose)
    keys = KeyRepository(session)
    versions = await keys.key_encryption_keys(tenant_id=tenant_id, purpose=purpose)
    previous = next((row for row in versions if row.status == "active"), None)
    if previous is not None:
        keyring.kek_cipher(previous)  # the keystore must hold the root key in use so far
        previous.status = "decrypt_only"
        await session.flush()
    version = (versions[0].version + 1) if versions else 1
    row = keyring.new_key_encryption_key(
        tenant_id=tenant_id, purpose=purpose, version=version, now_ns=now_ns
    )
    if not await keys.add_if_absent(row):
        raise ConcurrentRotation(version=version)
    keyring.forget_version(session, tenant_id=tenant_id, purpose=purpose)
    await record_security_event(
        session,
        tenant_id=_event_tenant(tenant_id),
        event_type=SecurityEventType.KEY_ROTATED,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        occurred_at=now_ns,
        subject_id=f"kek:{purpose}:v{version}",
        detail={"purpose": purpose, "version": version, "keystore": row.keystore_key_id},
    )
    return row


async def key_status(session: AsyncSession, *, tenant_id: uuid.UUID, purpose: str) -> PurposeStatus:
    check_purpose(purpose)
    keys = KeyRepository(session)
    rows = await keys.key_encryption_keys(tenant_id=tenant_id, purpose=purpose)
    counts = await keys.live_data_keys_by_version(tenant_id=tenant_id, purpose=purpose)
    versions = [
        VersionStatus(
            version=row.version,
            status=row.status,
            data_keys=counts.get(row.version, 0),
            created_at_ns=row.created_at,
            retired_at_ns=row.retired_at,
        )
        for row in rows
    ]
    return PurposeStatus(tenant_id=tenant_id, purpose=purpose, versions=versions)


async def list_key_statuses(
    session: AsyncSession, *, tenant_id: uuid.UUID | None = None
) -> list[PurposeStatus]:
    """Every (tenant, purpose) with keys, or one tenant's."""
    pairs = await KeyRepository(session).purposes()
    return [
        await key_status(session, tenant_id=tenant, purpose=purpose)
        for tenant, purpose in pairs
        if tenant_id is None or tenant == tenant_id
    ]


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    rewrapped: int
    """Data keys moved under the active version by this batch."""
    remaining: int
    """Live data keys still under an older version."""
    active_version: int | None
    """None when the purpose has no key-encryption key yet: nothing to rewrap."""


async def rewrap_batch(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID,
    purpose: str,
    batch_size: int,
    now_ns: int,
) -> RewrapProgress:
    """Re-wrap up to `batch_size` data keys under the active version. The data they
    encrypt is untouched: ciphertexts name their data key, not its wrapping.

    A rewrap creates no key: on a purpose never used (no version, so no data key) it does
    nothing, where the keyring's first-use path would have made version 1."""
    invariant(1 <= batch_size <= REWRAP_BATCH_MAX, "a rewrap batch is bounded")
    check_purpose(purpose)
    keys = KeyRepository(session)
    active = await keys.active_key_encryption_key(tenant_id=tenant_id, purpose=purpose)
    if active is None:
        # A rotation always leaves an active version: none means none was ever made.
        return RewrapProgress(rewrapped=0, remaining=0, active_version=None)
    rows = await keys.data_keys_below_version(
        tenant_id=tenant_id, purpose=purpose, version=active.version, limit=batch_size
    )
    for row in rows:
        raw = await keyring.unwrap_data_key(session, row)
        keyring.wrap_data_key(row, raw, kek=active)
    await session.flush()
    counts = await keys.live_data_keys_by_version(tenant_id=tenant_id, purpose=purpose)
    remaining = sum(count for version, count in counts.items() if version < active.version)
    return RewrapProgress(rewrapped=len(rows), remaining=remaining, active_version=active.version)


async def record_rewrap(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    purpose: str,
    rewrapped: int,
    active_version: int,
    actor: KeyActor,
    now_ns: int,
) -> None:
    """One security event for a finished rewrap (not one per batch)."""
    await record_security_event(
        session,
        tenant_id=_event_tenant(tenant_id),
        event_type=SecurityEventType.KEY_REWRAPPED,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        occurred_at=now_ns,
        subject_id=f"kek:{purpose}:v{active_version}",
        detail={"purpose": purpose, "version": active_version, "data_keys": rewrapped},
    )


async def retire_version(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID,
    purpose: str,
    version: int,
    actor: KeyActor,
    now_ns: int,
) -> KeyEncryptionKey:
    """Erase a decrypt-only version's key material; refused while it wraps a data key."""
    check_purpose(purpose)
    keys = KeyRepository(session)
    row = await keys.key_encryption_key(tenant_id=tenant_id, purpose=purpose, version=version)
    if row is None:
        raise KeyVersionNotFound(f"No version {version} of {purpose} keys.")
    if row.status == "active":
        raise KeyVersionActive(version=version)
    if row.status == "retired":
        return row
    in_use = (await keys.live_data_keys_by_version(tenant_id=tenant_id, purpose=purpose)).get(
        version, 0
    )
    if in_use:
        raise KeyVersionInUse(
            f"Version {version} still wraps {in_use} data keys: run `billfold keys rewrap`.",
            data_keys=in_use,
        )
    row.status = "retired"
    row.wrapped_key = None
    row.retired_at = now_ns
    await session.flush()
    keyring.forget_key_encryption_key(session, row.id)
    await record_security_event(
        session,
        tenant_id=_event_tenant(tenant_id),
        event_type=SecurityEventType.KEY_RETIRED,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        occurred_at=now_ns,
        subject_id=f"kek:{purpose}:v{version}",
        detail={"purpose": purpose, "version": version},
    )
    return row

"""Every query on the key hierarchy's tables. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.keys.models import DataKey, KeyEncryptionKey, SigningKey
from billfold.kit.errors import invariant

__all__ = ["KeyRepository"]

REWRAP_BATCH_MAX = 10_000


class KeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_if_absent(self, row: KeyEncryptionKey | DataKey | SigningKey) -> bool:
        """Insert `row` in a savepoint; False when a unique key says a concurrent writer
        created the same version or slot first (the caller reads theirs)."""
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError:
            return False
        return True

    async def key_encryption_keys(
        self, *, tenant_id: uuid.UUID, purpose: str
    ) -> Sequence[KeyEncryptionKey]:
        """Every version, newest first."""
        statement = (
            select(KeyEncryptionKey)
            .where(KeyEncryptionKey.tenant_id == tenant_id, KeyEncryptionKey.purpose == purpose)
            .order_by(KeyEncryptionKey.version.desc())
        )
        return (await self._session.scalars(statement)).all()

    async def key_encryption_key(
        self, *, tenant_id: uuid.UUID, purpose: str, version: int
    ) -> KeyEncryptionKey | None:
        statement = select(KeyEncryptionKey).where(
            KeyEncryptionKey.tenant_id == tenant_id,
            KeyEncryptionKey.purpose == purpose,
            KeyEncryptionKey.version == version,
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def active_key_encryption_key(
        self, *, tenant_id: uuid.UUID, purpose: str
    ) -> KeyEncryptionKey | None:
        statement = select(KeyEncryptionKey).where(
            KeyEncryptionKey.tenant_id == tenant_id,
            KeyEncryptionKey.purpose == purpose,
            KeyEncryptionKey.status == "active",
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def purposes(self) -> Sequence[tuple[uuid.UUID, str]]:
        """Every (tenant, purpose) that has key-encryption keys."""
        statement = (
            select(KeyEncryptionKey.tenant_id, KeyEncryptionKey.purpose)
            .distinct()
            .order_by(KeyEncryptionKey.tenant_id, KeyEncryptionKey.purpose)
        )
        return [(row[0], row[1]) for row in (await self._session.execute(statement)).all()]

    async def data_key(self, data_key_id: uuid.UUID) -> DataKey | None:
        return await self._session.get(DataKey, data_key_id)

    async def data_key_in_slot(
        self, *, tenant_id: uuid.UUID, purpose: str, owner: str, slot: str
    ) -> DataKey | None:
        statement = select(DataKey).where(
            DataKey.tenant_id == tenant_id,
            DataKey.purpose == purpose,
            DataKey.owner == owner,
            DataKey.slot == slot,
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def owner_destroyed(self, *, tenant_id: uuid.UUID, owner: str) -> bool:
        """Whether any data key of `owner` was destroyed (crypto-shredded)."""
        statement = (
            select(DataKey.id)
            .where(
                DataKey.tenant_id == tenant_id,
                DataKey.owner == owner,
                DataKey.destroyed_at.is_not(None),
            )
            .limit(1)
        )
        return (await self._session.scalars(statement)).first() is not None

    async def live_data_keys_by_version(
        self, *, tenant_id: uuid.UUID, purpose: str
    ) -> dict[int, int]:
        """How many undestroyed data keys each key-encryption key version wraps."""
        statement = (
            select(DataKey.kek_version, func.count())
            .where(
                DataKey.tenant_id == tenant_id,
                DataKey.purpose == purpose,
                DataKey.wrapped_key.is_not(None),
            )
            .group_by(DataKey.kek_version)
        )
        return {int(row[0]): int(row[1]) for row in (await self._session.execute(statement)).all()}

    async def data_keys_below_version(
        self, *, tenant_id: uuid.UUID, purpose: str, version: int, limit: int
    ) -> Sequence[DataKey]:
        """Undestroyed data keys wrapped by an older version than `version`, locked."""
        invariant(1 <= limit <= REWRAP_BATCH_MAX, "a rewrap batch is bounded")
        statement = (
            select(DataKey)
            .where(
                DataKey.tenant_id == tenant_id,
                DataKey.purpose == purpose,
                DataKey.kek_version < version,
                DataKey.wrapped_key.is_not(None),
            )
            .order_by(DataKey.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self._session.scalars(statement)).all()

    async def destroy_owner_data_keys(
        self, *, tenant_id: uuid.UUID, owner: str, now_ns: int
    ) -> list[uuid.UUID]:
        """Erase the wrapped bytes of every key of `owner`: its data becomes unreadable."""
        statement = select(DataKey.id).where(
            DataKey.tenant_id == tenant_id,
            DataKey.owner == owner,
            DataKey.wrapped_key.is_not(None),
        )
        ids = list((await self._session.scalars(statement)).all())
        if ids:
            await self._session.execute(
                update(DataKey)
                .where(DataKey.id.in_(ids))
                .values(wrapped_key=None, destroyed_at=now_ns)
            )
        return ids

    async def signing_keys(
        self, *, tenant_id: uuid.UUID, purpose: str | None
    ) -> Sequence[SigningKey]:
        """Newest first; every purpose when `purpose` is None."""
        statement = select(SigningKey).where(SigningKey.tenant_id == tenant_id)
        if purpose is not None:
            statement = statement.where(SigningKey.purpose == purpose)
        statement = statement.order_by(SigningKey.purpose, SigningKey.version.desc())
        return (await self._session.scalars(statement)).all()

"""Every query of the audit log. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, select, tuple_, union
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.encoding import ZERO_HASH, EntryFields, entry_hash
from billfold.audit.models import AuditChainHead, AuditCheckpoint, AuditEntry
from billfold.kit.errors import InvariantViolation, invariant

__all__ = ["SCAN_BATCH_SIZE", "AuditRepository", "StoredEntry", "fields_of"]

SCAN_BATCH_SIZE = 1_000
"""Entries read per query while streaming a chain."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as stored: what its hash covers, and the hash stored beside it."""

    fields: EntryFields
    entry_hash: bytes

    def hash_matches(self) -> bool:
        """Whether the stored hash is SHA-256 of the fields' encoding. Fields that have no
        encoding (a time outside u64, say: only tampering writes them) do not match, so
        whoever checks them reports a broken chain instead of crashing on it."""
        try:
            return entry_hash(self.fields) == self.entry_hash
        except InvariantViolation:
            return False


def fields_of(row: RowMapping | AuditEntry) -> EntryFields:
    """The hashed fields of a stored entry (a row mapping or a mapped object)."""
    get: Callable[[str], Any] = (
        row.__getattribute__ if isinstance(row, AuditEntry) else row.__getitem__
    )
    return EntryFields(
        id=get("id"),
        chain_id=get("chain_id"),
        sequence=get("sequence"),
        previous_hash=bytes(get("previous_hash")),
        occurred_at=get("occurred_at"),
        tenant_id=get("tenant_id"),
        actor_type=get("actor_type"),
        actor_id=get("actor_id"),
        action=get("action"),
        target=get("target"),
        source_ip=get("source_ip"),
        user_agent=get("user_agent"),
        before=get("before"),
        after=get("after"),
        detail=get("detail"),
    )


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_head(self, chain_id: uuid.UUID) -> AuditChainHead | None:
        """The chain's head row, locked until the transaction ends (PostgreSQL: FOR UPDATE;
        SQLite: BEGIN IMMEDIATE already holds the database's write lock)."""
        statement = (
            select(AuditChainHead)
            .where(AuditChainHead.chain_id == chain_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def create_head(
        self, *, chain_id: uuid.UUID, tenant_id: uuid.UUID | None, now_ns: int
    ) -> None:
        """An empty chain's head, unless a concurrent transaction made it first."""
        values = {
            "chain_id": chain_id,
            "tenant_id": tenant_id,
            "sequence": 0,
            "head_hash": ZERO_HASH,
            "checkpoint_number": 0,
            "checkpoint_sequence": 0,
            "checkpoint_hash": ZERO_HASH,
            "updated_at": now_ns,
        }
        dialect = self._session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(AuditChainHead).values(**values)
        await self._session.execute(statement.on_conflict_do_nothing(index_elements=["chain_id"]))

    async def get_head(self, chain_id: uuid.UUID) -> AuditChainHead | None:
        return await self._session.get(AuditChainHead, chain_id)

    async def add_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        self._session.add(checkpoint)

    async def flush(self) -> None:
        await self._session.flush()

    async def stream_entries(
        self, *, chain_id: uuid.UUID, first_sequence: int, last_sequence: int | None
    ) -> AsyncIterator[StoredEntry]:
        """A chain's entries from ``first_sequence`` in (sequence, id) order, read as plain
        rows (no identity map) in bounded batches. Repeated sequences (only a tampered
        table has them) all appear."""
        table = AuditEntry.__table__
        after: tuple[int, uuid.UUID] | None = None
        while True:
            statement = select(table).where(
                table.c.chain_id == chain_id, table.c.sequence >= first_sequence
            )
            if last_sequence is not None:
                statement = statement.where(table.c.sequence <= last_sequence)
            if after is not None:
                statement = statement.where(tuple_(table.c.sequence, table.c.id) > tuple_(*after))
            statement = statement.order_by(table.c.sequence, table.c.id).limit(SCAN_BATCH_SIZE)
            rows = (await self._session.execute(statement)).mappings().all()
            for row in rows:
                yield StoredEntry(fields=fields_of(row), entry_hash=bytes(row["entry_hash"]))
            if len(rows) < SCAN_BATCH_SIZE:
                return
            after = (rows[-1]["sequence"], rows[-1]["id"])

    async def entry_hashes(
        self, *, chain_id: uuid.UUID, first_sequence: int, last_sequence: int
    ) -> list[tuple[int, bytes]]:
        """(sequence, entry_hash) of a bounded range, in order."""
        invariant(first_sequence <= last_sequence, "a range")
        statement = (
            select(AuditEntry.sequence, AuditEntry.entry_hash)
            .where(
                AuditEntry.chain_id == chain_id,
                AuditEntry.sequence >= first_sequence,
                AuditEntry.sequence <= last_sequence,
            )
            .order_by(AuditEntry.sequence, AuditEntry.id)
        )
        return [(row[0], row[1]) for row in (await self._session.execute(statement)).all()]

    async def get_entry(self, *, chain_id: uuid.UUID, entry_id: uuid.UUID) -> AuditEntry | None:
        statement = select(AuditEntry).where(
            AuditEntry.id == entry_id, AuditEntry.chain_id == chain_id
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def list_entries(
        self, *, chain_id: uuid.UUID, after_sequence: int, limit: int
    ) -> Sequence[AuditEntry]:
        statement = (
            select(AuditEntry)
            .where(AuditEntry.chain_id == chain_id, AuditEntry.sequence > after_sequence)
            .order_by(AuditEntry.sequence)
            .limit(limit)
        )
        return (await self._session.scalars(statement)).all()

    async def get_checkpoint(
        self, *, chain_id: uuid.UUID, checkpoint_id: uuid.UUID
    ) -> AuditCheckpoint | None:
        statement = select(AuditCheckpoint).where(
            AuditCheckpoint.id == checkpoint_id, AuditCheckpoint.chain_id == chain_id
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def latest_checkpoint(self, chain_id: uuid.UUID) -> AuditCheckpoint | None:
        statement = (
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain_id == chain_id)
            .order_by(AuditCheckpoint.number.desc())
            .limit(1)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def checkpoint_covering(
        self, *, chain_id: uuid.UUID, sequence: int
    ) -> AuditCheckpoint | None:
        statement = (
            select(AuditCheckpoint)
            .where(
                AuditCheckpoint.chain_id == chain_id,
                AuditCheckpoint.first_sequence <= sequence,
                AuditCheckpoint.last_sequence >= sequence,
            )
            .order_by(AuditCheckpoint.number)
            .limit(1)
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def checkpoints_page(
        self, *, chain_id: uuid.UUID, after_number: int, limit: int
    ) -> Sequence[AuditCheckpoint]:
        statement = (
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain_id == chain_id, AuditCheckpoint.number > after_number)
            .order_by(AuditCheckpoint.number, AuditCheckpoint.id)
            .limit(limit)
        )
        return (await self._session.scalars(statement)).all()

    async def due_chains(self, *, limit: int) -> list[uuid.UUID]:
        """Chains with entries no checkpoint covers yet."""
        statement = (
            select(AuditChainHead.chain_id)
            .where(AuditChainHead.sequence > AuditChainHead.checkpoint_sequence)
            .order_by(AuditChainHead.chain_id)
            .limit(limit)
        )
        return list((await self._session.scalars(statement)).all())

    async def all_chain_ids(self) -> list[uuid.UUID]:
        """Every chain anything mentions: heads, entries and checkpoints (a chain whose
        head row was deleted is still found)."""
        statement = union(
            select(AuditChainHead.chain_id),
            select(AuditEntry.chain_id).distinct(),
            select(AuditCheckpoint.chain_id).distinct(),
        )
        return sorted({row[0] for row in (await self._session.execute(statement)).all()})

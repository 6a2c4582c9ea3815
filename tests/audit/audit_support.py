"""Helpers for audit tests: a unit of work per test, entries appended through the service,
and an attacker's raw access to the tables (triggers out of the way)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from billfold.audit import service
from billfold.audit.audit import AuditService
from billfold.audit.context import Source
from billfold.audit.models import AuditCheckpoint, AuditEntry
from billfold.audit.signing import LocalEd25519Signer
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings
from billfold.kit.signing import Signer

SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
"""RFC 8032 test 1's secret key: a fixed key, so tests never write a key file."""
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
"""A fixed root key for applications and commands under test (held in memory only)."""


def signer() -> LocalEd25519Signer:
    return LocalEd25519Signer.from_seed(bytes.fromhex(SEED_HEX), key_id="test-audit-key")


class StaticSigningKeys:
    """One in-memory key that signs and is trusted: chain tests, not key management."""

    def __init__(self, key: Signer) -> None:
        self._key = key

    async def active_signer(self, session: AsyncSession, *, now_ns: int) -> Signer:
        return self._key

    async def trusted_keys(self, session: AsyncSession) -> Mapping[str, bytes]:
        return {self._key.key_id: self._key.public_key_raw()}


def settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "master_key": MASTER_KEY}
    return Settings(**(values | overrides))


@asynccontextmanager
async def opened(database_url: str, *, pool_size: int = 2) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(database_url), pool_size=pool_size)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


def audit_service(unit_of_work: UnitOfWork, *, entries_max: int = 100_000) -> AuditService:
    return AuditService(
        unit_of_work,
        signing_keys=StaticSigningKeys(signer()),
        checkpoint_entries_max=entries_max,
    )


async def append_entries(
    unit_of_work: UnitOfWork, *, tenant_id: uuid.UUID | None, count: int, start_ns: int = 1
) -> list[AuditEntry]:
    """``count`` entries, each in its own transaction, with a little of everything."""
    entries = []
    for index in range(count):
        async with unit_of_work.begin() as session:
            entry = await service.append(
                session,
                tenant_id=tenant_id,
                action="config.changed" if index % 2 else "login.succeeded",
                occurred_at=start_ns + index,
                actor_type="operator",
                actor_id=f"opr_{index:032x}",
                target=f"acc_{index:032x}",
                before={"limit": index} if index % 2 else None,
                after={"limit": index + 1, "note": "naïve ✓"} if index % 2 else None,
                detail={"index": index},
                source=Source(ip="203.0.113.7", user_agent="test-agent/1.0"),
            )
            entries.append(entry)
    return entries


async def checkpoint_chain(unit_of_work: UnitOfWork, chain_id: uuid.UUID) -> AuditCheckpoint:
    """A checkpoint of this chain alone (the PostgreSQL database is shared by tests)."""
    async with unit_of_work.begin() as session:
        checkpoint = await service.create_checkpoint(
            session, chain_id=chain_id, signer=signer(), now_ns=time.time_ns(), entries_max=1000
        )
    assert checkpoint is not None
    return checkpoint


def raw_uuid(session: AsyncSession, value: uuid.UUID) -> object:
    """A UUID as the backend stores it: 32 hex characters on SQLite, uuid on PostgreSQL."""
    return value.hex if session.get_bind().dialect.name == "sqlite" else value


@asynccontextmanager
async def as_attacker(engine_or_url: str) -> AsyncIterator[AsyncSession]:
    """A session that writes the audit tables past their triggers, as someone with raw
    database access would: SQLite's triggers are dropped, PostgreSQL's skipped
    (``session_replication_role = replica``)."""
    engine: AsyncEngine = create_engine(parse_database_url(engine_or_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            if session.get_bind().dialect.name == "sqlite":
                for table in ("audit_entries", "audit_checkpoints"):
                    for action in ("update", "delete"):
                        await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
            else:
                await session.execute(text("SET LOCAL session_replication_role = replica"))
            yield session
    finally:
        await engine.dispose()


async def execute(session: AsyncSession, statement: str, **values: object) -> None:
    await session.execute(text(statement), values)


async def tamper_chain(database_url: str, statement: str, chain_id: uuid.UUID) -> None:
    """``statement`` run past the triggers, with ``:c`` the chain's id as stored."""
    async with as_attacker(database_url) as session:
        await execute(session, statement, c=raw_uuid(session, chain_id))


async def shift_sequences(
    session: AsyncSession, *, chain_id: uuid.UUID, from_sequence: int, by: int
) -> None:
    """Move entries at or after ``from_sequence`` by ``by`` without tripping the unique
    constraint midway (through negative numbers)."""
    chain = raw_uuid(session, chain_id)
    await execute(
        session,
        "UPDATE audit_entries SET sequence = -sequence WHERE chain_id = :c AND sequence >= :s",
        c=chain,
        s=from_sequence,
    )
    await execute(
        session,
        "UPDATE audit_entries SET sequence = -sequence + :by WHERE chain_id = :c AND sequence < 0",
        c=chain,
        by=by,
    )


async def insert_entry_row(session: AsyncSession, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    values = {
        name: raw_uuid(session, value) if isinstance(value, uuid.UUID) else value
        for name, value in row.items()
    }
    await session.execute(
        text(f"INSERT INTO audit_entries ({columns}) VALUES ({placeholders})"), values
    )


def sequences(entries: Sequence[AuditEntry]) -> list[int]:
    return [entry.sequence for entry in entries]

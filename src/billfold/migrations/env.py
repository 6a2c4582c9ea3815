"""Alembic environment: runs migrations over the async engine of `billfold.kit.db`."""

from __future__ import annotations

import asyncio
import hashlib

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from billfold.kit.db import create_engine, parse_database_url
from billfold.migrations.target import target_metadata

MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"billfold.migrations", digest_size=8).digest(), "big", signed=True
)
"""The PostgreSQL advisory-lock key (a signed 64-bit integer) that upgrades queue on."""


def _run(connection: Connection) -> None:
    # The caller's transaction is the whole run's (Alembic sees an external transaction):
    # the current revision is read, and every revision applied, under one lock.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    """Apply the migrations in one transaction that first takes a lock only one upgrade
    holds at a time: on PostgreSQL a transaction-scoped advisory lock, on SQLite the write
    lock (`BEGIN IMMEDIATE`, see `billfold.kit.db`). Processes upgrading together (`serve`
    and `worker` starting on SQLite, deployment jobs on PostgreSQL) queue: the first applies
    what is missing, the others then find the database at its head and apply nothing.
    Left to Alembic, SQLite (whose DDL Alembic does not treat as transactional) would commit
    each revision on its own, and another process could read the revision in between and
    apply the next one again; on PostgreSQL two upgrades read the same revision and the
    second failed on the first's changes. A failure rolls back every revision of the run.
    A revision that must run outside a transaction (`autocommit_block`, as CREATE INDEX
    CONCURRENTLY needs) would commit the run there and release the lock with it."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(parse_database_url(url), pool_size=1)
    try:  # a migration that raises must not leave its connection to the garbage collector
        async with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_run_online())

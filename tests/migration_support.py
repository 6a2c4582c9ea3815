"""What migration tests share: the differences alembic's autogenerate finds between a
migrated database and the models, and the approval requests' action-type CHECK."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata


def schema_differences(database_url: str, names: tuple[str, ...]) -> list[object]:
    """The differences between the database and the models that name one of `names`
    (other domains' tables share the metadata: only these are the caller's business)."""

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async def run() -> list[object]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return [diff for diff in asyncio.run(run()) if any(name in repr(diff) for name in names)]


def approval_action_type_check(database_url: str) -> str:
    """The CHECK constraint on approval requests' action types, as the database holds it."""
    if database_url.startswith("sqlite"):
        query = "SELECT sql FROM sqlite_master WHERE name = 'identity_approval_requests'"
    else:
        query = (
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'ck_identity_approval_requests_action_type'"
        )

    async def run() -> str:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return str((await connection.execute(text(query))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())

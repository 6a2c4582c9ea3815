"""What migration tests share: the differences alembic's autogenerate finds between a
migrated database and the models (one domain's, or every model's), a column's CHECK, the
approval requests' action-type CHECK, and one statement run on its own connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations.target import target_metadata


def schema_differences(database_url: str, names: tuple[str, ...]) -> list[object]:
    """The differences between the database and the models that name one of `names`
    (other domains' tables share the metadata: only these are the caller's business)."""

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    differences = _compared(database_url, compare)
    return [diff for diff in differences if any(name in repr(diff) for name in names)]


def whole_schema_differences(database_url: str) -> list[object]:
    """Every difference between the database and every model the migrations build, types
    and server defaults included (`alembic check` on the application's own metadata)."""

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        # Typed for one MetaData; it takes a sequence, as Alembic's target_metadata does.
        return list(compare_metadata(context, target_metadata))  # type: ignore[arg-type]

    return [diff for diff in _compared(database_url, compare) if not _known_difference(diff)]


def _compared(database_url: str, compare: Callable[[Connection], list[object]]) -> list[object]:
    """`compare` run on a connection to the database."""

    async def run() -> list[object]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _known_difference(diff: object) -> bool:
    """0001 created the ledger's unique timestamps without the models' naming convention
    (PostgreSQL named them `<table>_timestamp_key`, SQLite leaves them unnamed): the same
    constraint under another name, reported as one to remove and one to add."""
    return (
        isinstance(diff, tuple)
        and diff[0] in ("add_constraint", "remove_constraint")
        and getattr(diff[1], "table", None) is not None
        and diff[1].table.name in ("ledger_accounts", "ledger_transfers")
        and [column.name for column in diff[1].columns] == ["timestamp"]
    )


def execute(database_url: str, statement: Executable) -> list[str]:
    """Run `statement` in a transaction of its own; the first column of its rows, as text."""

    async def run() -> list[str]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(statement)
                return [str(row[0]) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def check_constraint(database_url: str, table: str, column: str) -> str:
    """The CHECK constraint on `table`.`column` (named `ck_<table>_<column>`), as the
    database holds it (SQLite: the table's whole definition)."""
    if database_url.startswith("sqlite"):
        query = f"SELECT sql FROM sqlite_master WHERE name = '{table}'"
    else:
        query = (
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            f" WHERE conname = 'ck_{table}_{column}'"
        )

    async def run() -> str:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return str((await connection.execute(text(query))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def approval_action_type_check(database_url: str) -> str:
    """The CHECK constraint on approval requests' action types, as the database holds it."""
    return check_constraint(database_url, "identity_approval_requests", "action_type")

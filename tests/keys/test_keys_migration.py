"""Migration 0007: the key and privacy tables match their models, and downgrade and upgrade
cleanly, on both backends."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from billfold.keys import models as keys_models  # noqa: F401 (registers tables)
from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.privacy import models as privacy_models  # noqa: F401 (registers tables)


def _differences(database_url: str) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async def run() -> list[object]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return [
        diff for diff in asyncio.run(run()) if "keys_" in repr(diff) or "privacy_" in repr(diff)
    ]


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    added = {diff[1].name for diff in _differences(isolated_database_url) if diff[0] == "add_table"}  # type: ignore[index]
    assert added == {
        "keys_encryption_keys",
        "keys_data_keys",
        "keys_signing_keys",
        "privacy_pii_values",
        "privacy_tokens",
        "privacy_consents",
    }
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

"""Migration 0007: matches the models of wallets, payments and connectors, and downgrades
and upgrades cleanly, on both backends."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from billfold.connectors import models as connectors_models
from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.payments import models as payments_models
from billfold.wallets import models as wallets_models

_OURS = ("wallets_", "payments_", "connectors_")
assert connectors_models and payments_models and wallets_models  # registers the tables


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

    return [diff for diff in asyncio.run(run()) if any(name in repr(diff) for name in _OURS)]


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_differences(isolated_database_url)) >= 12
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_the_payments_fx_migration_downgrades_and_upgrades_again(
    isolated_database_url: str,
) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0013_limit_overrides")
    missing = repr(_differences(isolated_database_url))
    for name in ("payments_monthly_volume", "fx_quote_id", "fee_returned", "fixed_amount"):
        assert name in missing
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

"""Migration 0019_risk_features matches the models (counters, profiles, the security
events' subject index) and downgrades cleanly."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from billfold.identity import security_events
from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.risk.features import models as feature_models

assert feature_models and security_events  # registers the tables

OURS = ("risk_counters", "risk_profiles", "ix_identity_security_events_tenant_subject_occurred")


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

    return [diff for diff in asyncio.run(run()) if any(name in repr(diff) for name in OURS)]


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert all(name in missing for name in OURS)
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

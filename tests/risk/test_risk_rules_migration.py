"""Migration 0020_risk_rules: the rules tables match the models, approval requests accept
the new action type, and it downgrades and upgrades again cleanly."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.risk import models as risk_models

assert risk_models  # registers the tables
RULE_TABLES = ("risk_rules", "risk_rule_versions", "risk_rulesets")


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

    return [d for d in asyncio.run(run()) if any(table in repr(d) for table in RULE_TABLES)]


def _action_type_check(database_url: str) -> str:
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


def test_the_migration_creates_exactly_the_modelled_rule_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []
    assert "risk_rule_change" in _action_type_check(isolated_database_url)


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert all(table in missing for table in RULE_TABLES)
    check = _action_type_check(isolated_database_url)
    assert "key_rotation" in check and "risk_rule_change" not in check
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
    assert "risk_rule_change" in _action_type_check(isolated_database_url)

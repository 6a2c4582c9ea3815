"""Migration 0002: matches the models, and downgrades and upgrades cleanly, on both backends."""

from __future__ import annotations

from alembic import command

from billfold.identity import models  # noqa: F401 (registers the tables)
from billfold.migrations import alembic_config, upgrade
from migration_support import schema_differences


def _identity_differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("identity_",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _identity_differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0001_ledger")
    assert len(_identity_differences(isolated_database_url)) >= 2  # both tables gone
    upgrade(isolated_database_url)
    assert _identity_differences(isolated_database_url) == []

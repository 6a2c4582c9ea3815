"""Migration 0007: matches the models, and downgrades and upgrades cleanly, on both backends."""

from __future__ import annotations

from alembic import command

from billfold.events import models  # noqa: F401 (registers the tables)
from billfold.migrations import alembic_config, upgrade
from migration_support import schema_differences


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("events_",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_differences(isolated_database_url)) >= 6
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

"""Migration 0007: matches the audit models, and downgrades and upgrades cleanly."""

from __future__ import annotations

from alembic import command

from billfold.audit import models  # noqa: F401 (registers the tables)
from billfold.migrations import alembic_config, upgrade
from migration_support import schema_differences


def _audit_differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("audit_",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _audit_differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_audit_differences(isolated_database_url)) == 3  # the three tables gone
    upgrade(isolated_database_url)
    assert _audit_differences(isolated_database_url) == []

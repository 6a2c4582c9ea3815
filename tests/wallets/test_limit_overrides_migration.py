"""Migration 0013: creates exactly the modelled limit-override table, and downgrades and
upgrades cleanly, on both backends."""

from __future__ import annotations

from alembic import command

from billfold.migrations import alembic_config, upgrade
from billfold.wallets import models as wallets_models
from migration_support import schema_differences

assert wallets_models  # registers the tables
_TABLE = "wallets_limit_overrides"


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, (_TABLE,))


def test_the_migration_creates_exactly_the_modelled_table(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0012_api_key_scopes")
    assert len(_differences(isolated_database_url)) >= 1  # the table is gone
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

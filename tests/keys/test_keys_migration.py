"""Migration 0007: the key and privacy tables match their models, and downgrade and upgrade
cleanly, on both backends."""

from __future__ import annotations

from alembic import command

from billfold.keys import models as keys_models  # noqa: F401 (registers tables)
from billfold.migrations import alembic_config, upgrade
from billfold.privacy import models as privacy_models  # noqa: F401 (registers tables)
from migration_support import schema_differences


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("keys_", "privacy_"))


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

"""Migration 0007: the fee and FX tables match the models, and it downgrades and upgrades
cleanly, on both backends."""

from __future__ import annotations

from alembic import command

from billfold.fx import models as fx_models
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.payments.fees import models as fees_models
from migration_support import schema_differences

assert fx_models.FxQuoteRow.metadata is metadata
assert fees_models.FeeScheduleRow.metadata is metadata


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("fees_schedules", "fx_"))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_differences(isolated_database_url)) >= 3  # every table gone
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

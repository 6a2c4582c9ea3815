"""The models' migration creates exactly the modelled tables and downgrades cleanly."""

from __future__ import annotations

from alembic import command

from billfold.migrations import alembic_config, upgrade
from billfold.risk.scoring import models as scoring_models
from migration_support import schema_differences

assert scoring_models  # registers the tables


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("risk_model",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert "risk_model_versions" in missing and "risk_model_alerts" in missing
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

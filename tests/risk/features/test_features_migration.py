"""Migration 0019_risk_features matches the models (counters, profiles, the security
events' subject index) and downgrades cleanly."""

from __future__ import annotations

from alembic import command

from billfold.identity import security_events
from billfold.migrations import alembic_config, upgrade
from billfold.risk.features import models as feature_models
from migration_support import schema_differences

assert feature_models and security_events  # registers the tables

OURS = ("risk_counters", "risk_profiles", "ix_identity_security_events_tenant_subject_occurred")


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, OURS)


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert all(name in missing for name in OURS)
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []

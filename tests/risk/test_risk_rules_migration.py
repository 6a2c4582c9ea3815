"""Migration 0020_risk_rules: the rules tables match the models, approval requests accept
the new action type, and it downgrades and upgrades again cleanly."""

from __future__ import annotations

from alembic import command

from billfold.migrations import alembic_config, upgrade
from billfold.risk import models as risk_models
from migration_support import approval_action_type_check, schema_differences

assert risk_models  # registers the tables
RULE_TABLES = ("risk_rules", "risk_rule_versions", "risk_rulesets")


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, RULE_TABLES)


def test_the_migration_creates_exactly_the_modelled_rule_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []
    assert "risk_rule_change" in approval_action_type_check(isolated_database_url)


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert all(table in missing for table in RULE_TABLES)
    check = approval_action_type_check(isolated_database_url)
    assert "key_rotation" in check and "risk_rule_change" not in check
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
    assert "risk_rule_change" in approval_action_type_check(isolated_database_url)

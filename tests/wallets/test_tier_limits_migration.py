"""Migration 0033: creates exactly the modelled tier-limits table, approval requests accept
``tier_limits_change``; it downgrades (the table, the action type and its requests gone)
and upgrades again cleanly, on both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from billfold.migrations import alembic_config, upgrade
from billfold.wallets import models as wallets_models
from migration_support import approval_action_type_check, execute, schema_differences

assert wallets_models  # registers the tables
_TABLE = "wallets_tier_limits"


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, (_TABLE,))


def test_the_table_and_the_action_type_come_and_go(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []
    assert "tier_limits_change" in approval_action_type_check(isolated_database_url)
    command.downgrade(alembic_config(isolated_database_url), "0032_payment_capture_claims")
    assert len(_differences(isolated_database_url)) >= 1  # the table is gone
    check = approval_action_type_check(isolated_database_url)
    assert "risk_model_promotion" in check and "tier_limits_change" not in check
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
    assert "tier_limits_change" in approval_action_type_check(isolated_database_url)
    assert execute(isolated_database_url, text(f"SELECT count(*) FROM {_TABLE}")) == ["0"]

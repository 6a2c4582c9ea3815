"""Migrations 0024 and 0025: a rule records its disable's approval request, a model version
its promotion's, approval requests accept ``risk_model_promotion``; both downgrade and
upgrade again cleanly."""

from __future__ import annotations

from alembic import command

from billfold.migrations import alembic_config, upgrade
from billfold.risk import models as risk_models
from billfold.risk.scoring import models as scoring_models
from migration_support import approval_action_type_check, schema_differences

assert risk_models and scoring_models  # registers the tables
COLUMNS = ("disable_approval_id", "promotion_approval_id")


def _differences(database_url: str) -> list[str]:
    return [repr(diff) for diff in schema_differences(database_url, COLUMNS)]


def test_the_columns_and_the_action_type_come_and_go(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []
    assert "risk_model_promotion" in approval_action_type_check(isolated_database_url)
    command.downgrade(alembic_config(isolated_database_url), "0019_risk_features")
    missing = " ".join(_differences(isolated_database_url))
    assert all(column in missing for column in COLUMNS)
    check = approval_action_type_check(isolated_database_url)
    assert "risk_response_reversal" in check and "risk_model_promotion" not in check
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
    assert "risk_model_promotion" in approval_action_type_check(isolated_database_url)

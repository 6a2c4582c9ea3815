"""Migrations 0024 and 0025: a rule records its disable's approval request, a model version
its promotion's, approval requests accept ``risk_model_promotion``; both downgrade and
upgrade again cleanly."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from billfold.risk import models as risk_models
from billfold.risk.scoring import models as scoring_models
from risk.test_risk_rules_migration import _action_type_check

assert risk_models and scoring_models  # registers the tables
COLUMNS = ("disable_approval_id", "promotion_approval_id")


def _differences(database_url: str) -> list[str]:
    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async def run() -> list[object]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return [repr(d) for d in asyncio.run(run()) if any(c in repr(d) for c in COLUMNS)]


def test_the_columns_and_the_action_type_come_and_go(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []
    assert "risk_model_promotion" in _action_type_check(isolated_database_url)
    command.downgrade(alembic_config(isolated_database_url), "0019_risk_features")
    missing = " ".join(_differences(isolated_database_url))
    assert all(column in missing for column in COLUMNS)
    check = _action_type_check(isolated_database_url)
    assert "risk_response_reversal" in check and "risk_model_promotion" not in check
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
    assert "risk_model_promotion" in _action_type_check(isolated_database_url)

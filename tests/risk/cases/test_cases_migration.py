"""The review queue's migration (0022_risk_cases) matches the models and downgrades
cleanly: its tables, wallets' limit reductions, and the approval action type it adds."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import text

from billfold.kit.db import create_engine, parse_database_url
from billfold.migrations import alembic_config, upgrade
from billfold.risk.cases import models as cases_models
from billfold.wallets import models as wallets_models
from migration_support import schema_differences

assert cases_models and wallets_models  # registers the tables

_TABLES = (
    "risk_case_notes",
    "risk_case_resolutions",
    "risk_response_enforcements",
    "wallets_limit_reductions",
)


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, _TABLES)


def _insert_unknown_action_type(database_url: str) -> None:
    async def run() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.begin() as connection:
                # The action type check alone is asked: a row that breaks it fails first.
                await connection.execute(
                    text(
                        "INSERT INTO identity_approval_requests (id, tenant_id, action_type,"
                        " payload, reason, requested_by, status, created_at, expires_at)"
                        " VALUES (:id, :id, 'nonsense', '{}', 'r', :id, 'pending', 1, 2)"
                    ),
                    {"id": "0" * 32},
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    assert all(name in missing for name in _TABLES)
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_an_unknown_action_type_is_still_refused(isolated_database_url: str) -> None:
    with pytest.raises(Exception, match=r"(?i)check"):
        _insert_unknown_action_type(isolated_database_url)

"""Migration 0034: `fx_quotes.claimed_at` and its partial index match the models, and it
downgrades (an open claim becomes what the older release made of it, a used quote) and
upgrades again cleanly, on both backends."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import command

from billfold.fx.models import FxQuoteRow
from billfold.migrations import alembic_config, upgrade
from migration_support import execute, schema_differences


def _quote(*, claimed_at: int | None) -> sa.Insert:
    accounts = None if claimed_at is None else uuid.uuid4()
    return sa.insert(FxQuoteRow).values(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        sell_currency="EUR",
        buy_currency="USD",
        sell_amount=100,
        buy_amount=109,
        fixed_side="sell",
        mid_rate="1.1",
        rate="1.09",
        spread_bps=50,
        rates_date="2023-12-29",
        created_at=1,
        expires_at=2,
        claimed_at=claimed_at,
        used_at=None,
        sell_account_id=accounts,
        buy_account_id=accounts,
    )


def test_the_migrated_quotes_table_is_the_model(isolated_database_url: str) -> None:
    assert schema_differences(isolated_database_url, ("fx_",)) == []


def test_a_downgrade_keeps_an_open_claim_used_and_upgrades_again(
    isolated_database_url: str,
) -> None:
    execute(isolated_database_url, _quote(claimed_at=7))
    execute(isolated_database_url, _quote(claimed_at=None))
    command.downgrade(alembic_config(isolated_database_url), "0033_tier_limits")
    used = execute(
        isolated_database_url,
        sa.text("SELECT COALESCE(used_at, 0) FROM fx_quotes ORDER BY COALESCE(used_at, 0)"),
    )
    assert used == ["0", "7"]
    assert schema_differences(isolated_database_url, ("fx_",)) != []  # claimed_at gone
    upgrade(isolated_database_url)
    assert schema_differences(isolated_database_url, ("fx_",)) == []

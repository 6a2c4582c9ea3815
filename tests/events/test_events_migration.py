"""The events migrations: they match the models, and downgrade and upgrade cleanly, on both
backends."""

from __future__ import annotations

import asyncio
import re

from alembic import command
from sqlalchemy import text

from billfold.events import models  # noqa: F401 (registers the tables)
from billfold.kit.db import create_engine, parse_database_url
from billfold.migrations import alembic_config, upgrade
from migration_support import schema_differences

PREFIX = "ix_events_webhook_deliveries_"


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("events_",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_differences(isolated_database_url)) >= 6
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def _delivery_indexes(database_url: str) -> dict[str, str]:
    """The deliveries' index definitions as the database holds them."""
    if database_url.startswith("sqlite"):
        query = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name = 'events_webhook_deliveries' AND sql IS NOT NULL"
        )
    else:
        query = (
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE tablename = 'events_webhook_deliveries'"
        )

    async def run() -> dict[str, str]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return {row[0]: row[1] for row in await connection.execute(text(query))}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_due_and_order_indexes_hold_pending_deliveries_only(
    isolated_database_url: str,
) -> None:
    """Migration 0028: the due and order indexes are partial on pending deliveries (so a
    completion, never HOT as it changes `status`, adds no entry to them), the completed
    index on the others; the downgrade restores the full indexes, and the upgrade again."""
    indexes = _delivery_indexes(isolated_database_url)
    for name in ("due", "order"):
        assert re.search(r"WHERE \(?\(?status\)?(::text)? = 'pending'", indexes[f"{PREFIX}{name}"])
    assert "succeeded" in indexes[f"{PREFIX}completed"].split("WHERE", 1)[1]
    command.downgrade(alembic_config(isolated_database_url), "0027_deliveries_event_index")
    before = _delivery_indexes(isolated_database_url)
    assert f"{PREFIX}completed" not in before
    assert all("WHERE" not in before[f"{PREFIX}{name}"] for name in ("due", "order"))
    upgrade(isolated_database_url)
    assert _delivery_indexes(isolated_database_url) == indexes
    assert _differences(isolated_database_url) == []

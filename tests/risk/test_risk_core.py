"""Risk's shared tables: the migration matches the models and downgrades cleanly; labels
are idempotent per source and a changed verdict replaces the old one."""

from __future__ import annotations

import asyncio
import uuid

from alembic import command

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.migrations import alembic_config, upgrade
from billfold.risk import models as risk_models
from billfold.risk.labels import LabelSource, labels_since, record_label
from migration_support import schema_differences

assert risk_models  # registers the tables


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("risk_",))


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0015_events_secrets")
    missing = repr(_differences(isolated_database_url))
    assert "risk_decisions" in missing and "risk_labels" in missing
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_a_label_is_stored_once_per_source_and_a_new_verdict_replaces_it(
    database_url: str,
) -> None:
    tenant_id = uuid.uuid4()

    async def run() -> list[tuple[str, bool, str, int]]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        unit_of_work = UnitOfWork(engine)
        try:
            changes = []
            for fraud, source, at in (
                (True, LabelSource.ANALYST, 10),
                (True, LabelSource.ANALYST, 20),  # the same verdict: nothing changes
                (True, LabelSource.CHARGEBACK_LOST, 30),
                (False, LabelSource.ANALYST, 40),  # the analyst changed their mind
            ):
                async with unit_of_work.begin() as session:
                    changes.append(
                        await record_label(
                            session,
                            tenant_id=tenant_id,
                            mode="test",
                            reference="pay_0001",
                            fraud=fraud,
                            source=source,
                            decision_id=None,
                            at_ns=at,
                        )
                    )
            assert changes == [True, False, True, True]
            async with unit_of_work.begin() as session:
                rows = await labels_since(
                    session, tenant_id=tenant_id, mode="test", since_ns=0, limit=10
                )
                return [(r.reference, r.fraud, r.source, r.updated_at) for r in rows]
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [
        ("pay_0001", True, "chargeback_lost", 30),
        ("pay_0001", False, "analyst", 40),
    ]

"""`billfold risk train`: trains one tenant (or every active one) and prints what it made."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import select

from billfold.kit.ids import format_id
from billfold.risk.scoring.models import RiskModelVersion
from cli_support import billfold
from risk.scoring.scoring_support import labelled_set, opened, write_decisions


def _invoke(database_url: str, *arguments: str) -> str:
    ran = billfold(
        "risk",
        "train",
        *arguments,
        environment={"BILLFOLD_DATABASE_URL": database_url, "COLUMNS": "200"},
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def test_risk_train_makes_shadow_versions_then_nothing_new(isolated_database_url: str) -> None:
    tenant_id = uuid.uuid4()

    async def seed() -> None:
        async with opened(isolated_database_url) as unit_of_work:
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="live",
                rows=labelled_set(4, 80),
                start_ns=time.time_ns() - 10**9,
            )

    asyncio.run(seed())
    tenant = format_id("ten", tenant_id)
    first = _invoke(isolated_database_url, "--tenant", tenant, "--mode", "live")
    assert "Risk models" in first and first.count("shadow") == 2
    assert _versions(isolated_database_url, tenant_id) == [
        ("anomaly_hst", 1),
        ("fraud_logistic", 1),
    ]
    again = _invoke(isolated_database_url, "--tenant", tenant)  # both modes
    assert "shadow" not in again
    _invoke(isolated_database_url, "--mode", "live")  # every tenant
    assert _versions(isolated_database_url, tenant_id) == [
        ("anomaly_hst", 1),
        ("fraud_logistic", 1),
    ]


def _versions(database_url: str, tenant_id: uuid.UUID) -> list[tuple[str, int]]:
    async def read() -> list[tuple[str, int]]:
        async with opened(database_url) as unit_of_work, unit_of_work.read() as session:
            statement = (
                select(RiskModelVersion.name, RiskModelVersion.version)
                .where(RiskModelVersion.tenant_id == tenant_id)
                .order_by(RiskModelVersion.name, RiskModelVersion.version)
            )
            return [(row[0], row[1]) for row in (await session.execute(statement)).all()]

    return asyncio.run(read())


def test_the_worker_trains_on_its_schedule(isolated_database_url: str) -> None:
    from billfold.kit.clock import ManualClock
    from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
    from billfold.kit.settings import Settings
    from billfold.ledger.ledger import Ledger
    from billfold.worker import Worker

    tenant_id = uuid.uuid4()

    async def run() -> int:
        settings = Settings(database_url=isolated_database_url)
        engine = create_engine(parse_database_url(isolated_database_url), pool_size=2)
        unit_of_work = UnitOfWork(engine)
        ledger = Ledger.from_settings(settings)
        await ledger.open()
        try:
            clock = ManualClock(start_ns=time.time_ns())
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="test",
                rows=labelled_set(8, 40),
                start_ns=clock.now_ns() - 10**9,
            )
            worker = Worker(settings, unit_of_work=unit_of_work, ledger=ledger, clock=clock)
            assert await worker.train_risk_models() == 2  # its database is its own
            await worker.train_risk_models()  # nothing new for this tenant
            await worker.stop()
            async with unit_of_work.read() as session:
                statement = select(RiskModelVersion.name).where(
                    RiskModelVersion.tenant_id == tenant_id
                )
                return len((await session.execute(statement)).all())
        finally:
            await ledger.close()
            await engine.dispose()

    assert asyncio.run(run()) == 2  # one version of each model, not two

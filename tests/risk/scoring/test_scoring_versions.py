"""Model versions on both backends: training stores a shadow version learned from the
labelled decisions (found by decision id or by reference), training again learns only what
is new, promoting retires the previous active version, and the registry serves the right
enforcing scorer by label count, reloading after a promotion."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.kit.clock import ManualClock
from billfold.kit.db import UnitOfWork
from billfold.risk.scoring import service
from billfold.risk.scoring.config import ScoringConfig
from billfold.risk.scoring.errors import ModelNotFound
from billfold.risk.scoring.models import RiskModelVersion
from billfold.risk.scoring.registry import ModelRegistry, ModelScorer
from billfold.risk.scoring.state import derive_signing_key
from billfold.risk.scoring.tasks import train, train_all
from risk.scoring.scoring_support import auc, labelled_set, opened, write_decisions

CONFIG = ScoringConfig(
    labels_min=500, train_batch_size=256, signing_key=derive_signing_key(b"s" * 32)
)
OPERATOR = service.Actor(actor_type="operator", actor_id="opr_" + "0" * 32)


async def _statuses(unit_of_work: UnitOfWork, tenant_id: uuid.UUID) -> list[tuple[str, int, str]]:
    async with unit_of_work.read() as session:
        rows = (
            await session.execute(
                select(RiskModelVersion)
                .where(RiskModelVersion.tenant_id == tenant_id)
                .order_by(RiskModelVersion.name, RiskModelVersion.version)
            )
        ).scalars()
        return [(row.name, row.version, row.status) for row in rows]


async def _promote(unit_of_work: UnitOfWork, tenant_id: uuid.UUID, model_id: uuid.UUID) -> None:
    async with unit_of_work.begin() as session:
        await service.promote(
            session, tenant_id=tenant_id, model_id=model_id, actor=OPERATOR, now_ns=time.time_ns()
        )


def test_training_stores_shadow_versions_and_promotion_retires_the_previous(
    database_url: str,
) -> None:
    tenant_id = uuid.uuid4()

    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="test",
                rows=labelled_set(1, 600),
                start_ns=1_000,
            )
            first = await train(
                unit_of_work, config=CONFIG, tenant_id=tenant_id, mode="test", now_ns=10
            )
            supervised, detector = first
            assert supervised.learned == 600 and detector.learned == 600
            assert supervised.version is not None and detector.version is not None
            metrics = json.loads(supervised.version.metrics)
            assert metrics["run"]["samples"] == 600 and metrics["run"]["skipped"] == 0
            assert metrics["run"]["auc"] > 0.9  # prequential: scored before learning each
            assert metrics["reference"]["size"] > 100
            assert await _statuses(unit_of_work, tenant_id) == [
                ("anomaly_hst", 1, "shadow"),
                ("fraud_logistic", 1, "shadow"),
            ]
            # Nothing new: no new version.
            again = await train(
                unit_of_work, config=CONFIG, tenant_id=tenant_id, mode="test", now_ns=20
            )
            assert [result.version for result in again] == [None, None]

            await _promote(unit_of_work, tenant_id, supervised.version.id)
            await _promote(unit_of_work, tenant_id, supervised.version.id)  # idempotent
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="test",
                rows=labelled_set(2, 100),
                start_ns=5_000_000,
            )
            second = await train(
                unit_of_work,
                config=CONFIG,
                tenant_id=tenant_id,
                mode="test",
                kinds=["supervised"],
                now_ns=30,
            )
            assert second[0].learned == 100 and second[0].version is not None
            assert second[0].version.trained_on == 700  # incremental: 600 before, 100 new
            assert await _statuses(unit_of_work, tenant_id) == [
                ("anomaly_hst", 1, "shadow"),
                ("fraud_logistic", 1, "active"),
                ("fraud_logistic", 2, "shadow"),
            ]
            await _promote(unit_of_work, tenant_id, second[0].version.id)
            assert await _statuses(unit_of_work, tenant_id) == [
                ("anomaly_hst", 1, "shadow"),
                ("fraud_logistic", 1, "retired"),
                ("fraud_logistic", 2, "active"),
            ]
            async with unit_of_work.read() as session:
                actions = (
                    await session.execute(
                        select(AuditEntry.action, AuditEntry.actor_id).where(
                            AuditEntry.tenant_id == tenant_id
                        )
                    )
                ).all()
            assert [a for a, _ in actions].count("risk.model.promoted") == 2
            assert ("risk.model.trained", None) in actions

    asyncio.run(run())


def test_the_registry_enforces_by_label_count_and_reloads_after_promotion(
    database_url: str,
) -> None:
    tenant_id = uuid.uuid4()

    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            clock = ManualClock()
            registry = ModelRegistry(unit_of_work, config=CONFIG, clock=clock)
            assert (await registry.refresh(tenant_id, "live")).enforcing is None
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="live",
                rows=labelled_set(5, 300),
                start_ns=1_000,
            )
            supervised, detector = await train(
                unit_of_work,
                config=CONFIG,
                tenant_id=tenant_id,
                mode="live",
                now_ns=1,
                registry=registry,
            )
            assert supervised.version is not None and detector.version is not None
            unpromoted = await registry.refresh(tenant_id, "live")
            assert unpromoted.enforcing is None  # shadow versions never enforce
            assert {s.name for s in unpromoted.shadow} == {"fraud_logistic", "anomaly_hst"}

            await _promote(unit_of_work, tenant_id, supervised.version.id)
            await _promote(unit_of_work, tenant_id, detector.version.id)
            few_labels = await registry.refresh(tenant_id, "live")
            # 300 labels < labels_min 500: the anomaly detector enforces, the model shadows.
            assert isinstance(few_labels.enforcing, ModelScorer)
            assert few_labels.enforcing.kind == "anomaly"
            assert [s.kind for s in few_labels.shadow] == ["supervised"]

            rows = labelled_set(6, 300)
            await write_decisions(
                unit_of_work, tenant_id=tenant_id, mode="live", rows=rows, start_ns=9_000_000
            )
            (retrained,) = await train(
                unit_of_work,
                config=CONFIG,
                tenant_id=tenant_id,
                mode="live",
                kinds=["supervised"],
                now_ns=2,
            )
            assert retrained.version is not None and retrained.version.trained_on == 600
            await _promote(unit_of_work, tenant_id, retrained.version.id)
            # Within the refresh interval the cached set is served; after it, refreshed.
            assert registry.scorers_for(tenant_id, "live") == few_labels
            clock.advance(seconds=CONFIG.refresh_interval_s)
            registry.scorers_for(tenant_id, "live")  # starts the background refresh
            await asyncio.sleep(0)
            for _ in range(100):
                if registry.scorers_for(tenant_id, "live") != few_labels:
                    break
                await asyncio.sleep(0.01)
            enough = registry.scorers_for(tenant_id, "live")
            assert isinstance(enough.enforcing, ModelScorer)
            assert (enough.enforcing.kind, enough.enforcing.version) == ("supervised", 2)
            assert [s.kind for s in enough.shadow] == ["anomaly"]
            pairs = [(enough.enforcing.score(f), fraud) for f, fraud in labelled_set(77, 400)]
            assert auc(pairs) > 0.9
            # The other mode has nothing.
            assert (await registry.refresh(tenant_id, "test")).enforcing is None

    asyncio.run(run())


def test_train_all_visits_every_tenant_with_recent_decisions(isolated_database_url: str) -> None:
    tenants = [uuid.uuid4(), uuid.uuid4()]
    now_ns = time.time_ns()

    async def run() -> None:
        async with opened(isolated_database_url) as unit_of_work:
            for index, tenant_id in enumerate(tenants):
                await write_decisions(
                    unit_of_work,
                    tenant_id=tenant_id,
                    mode="test",
                    rows=labelled_set(index, 50),
                    start_ns=now_ns - 10**9,
                    label=index == 0,
                )
            results = await train_all(unit_of_work, config=CONFIG, now_ns=now_ns)
            ours = {(r.tenant_id, r.kind): r.learned for r in results if r.tenant_id in tenants}
            assert ours == {
                (tenants[0], "supervised"): 50,
                (tenants[0], "anomaly"): 50,
                (tenants[1], "supervised"): 0,  # no labels yet: no supervised version
                (tenants[1], "anomaly"): 50,
            }

    asyncio.run(run())


def test_an_unusable_state_is_skipped_not_served(database_url: str) -> None:
    tenant_id = uuid.uuid4()

    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await write_decisions(
                unit_of_work, tenant_id=tenant_id, mode="test", rows=labelled_set(9, 60), start_ns=1
            )
            _, detector = await train(
                unit_of_work, config=CONFIG, tenant_id=tenant_id, mode="test", now_ns=1
            )
            assert detector.version is not None
            await _promote(unit_of_work, tenant_id, detector.version.id)
            unsigned = ModelRegistry(unit_of_work, config=ScoringConfig(signing_key=None))
            assert (await unsigned.refresh(tenant_id, "test")).enforcing is None
            signed = ModelRegistry(unit_of_work, config=CONFIG)
            assert (await signed.refresh(tenant_id, "test")).enforcing is not None
            # Training under another key cannot go on from that state: it starts over.
            (again,) = await train(
                unit_of_work,
                config=ScoringConfig(signing_key=None),
                tenant_id=tenant_id,
                mode="test",
                kinds=["anomaly"],
                now_ns=2,
            )
            assert again.learned == 60 and again.version is not None
            assert (again.version.version, again.version.trained_on) == (2, 60)

    asyncio.run(run())


def test_promoting_an_unknown_version_is_not_found(database_url: str) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            with pytest.raises(ModelNotFound):
                await _promote(unit_of_work, uuid.uuid4(), uuid.uuid4())

    asyncio.run(run())

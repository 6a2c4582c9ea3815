"""Drift on both backends: the engine's observed scores are buffered; a flush compares full
windows with the version's reference and, on drift only, writes an alert row, an outbox
event and a warning; the cooldown keeps one model from raising a storm."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

from sqlalchemy import select
from structlog.testing import capture_logs

from billfold.events.models import OutboxEvent
from billfold.kit.clock import ManualClock
from billfold.kit.ids import format_id
from billfold.risk.scoring import service
from billfold.risk.scoring.config import ScoringConfig
from billfold.risk.scoring.models import RiskModelAlert
from billfold.risk.scoring.registry import ModelRegistry, ModelScorer
from billfold.risk.scoring.tasks import check_drift, train
from risk.scoring.scoring_support import labelled_set, movement_features, opened, write_decisions

CONFIG = ScoringConfig(drift_window=300, drift_psi_max=0.25, drift_cooldown_s=60)


def test_a_shift_raises_one_alert_with_its_event_and_stable_traffic_none(database_url: str) -> None:
    tenant_id = uuid.uuid4()
    rng = random.Random(31)

    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="live",
                rows=labelled_set(3, 1500),
                start_ns=1,
                label=False,
            )
            (detector,) = await train(
                unit_of_work,
                config=CONFIG,
                tenant_id=tenant_id,
                mode="live",
                kinds=["anomaly"],
                now_ns=1,
            )
            assert detector.version is not None
            async with unit_of_work.begin() as session:
                await service.promote(
                    session,
                    tenant_id=tenant_id,
                    model_id=detector.version.id,
                    actor=service.Actor.system(),
                    now_ns=2,
                )
            clock = ManualClock()
            registry = ModelRegistry(unit_of_work, config=CONFIG, clock=clock)
            scorer = (await registry.refresh(tenant_id, "live")).enforcing
            assert isinstance(scorer, ModelScorer) and scorer.reference is not None

            def observe(features: dict[str, object]) -> None:
                score = scorer.score(features)  # type: ignore[arg-type]
                registry.observe(tenant_id, "live", scorer, features, score)  # type: ignore[arg-type]

            for _ in range(900):  # the same traffic as in training: no drift
                observe(movement_features(rng, fraud=rng.random() < 0.15))
            assert await check_drift(registry) == 0
            for _ in range(600):  # now every movement is the fraud pattern
                observe(movement_features(rng, fraud=True))
            with capture_logs() as logs:
                assert await check_drift(registry) == 1  # two windows drifted, one cooldown
            assert [entry["event"] for entry in logs] == ["risk.model_drift_detected"]
            clock.advance(seconds=CONFIG.drift_cooldown_s)
            for _ in range(300):
                observe(movement_features(rng, fraud=True))
            assert await check_drift(registry) == 1

            async with unit_of_work.read() as session:
                alerts = (
                    (
                        await session.execute(
                            select(RiskModelAlert).where(RiskModelAlert.tenant_id == tenant_id)
                        )
                    )
                    .scalars()
                    .all()
                )
                events = (
                    (
                        await session.execute(
                            select(OutboxEvent).where(OutboxEvent.tenant_id == tenant_id)
                        )
                    )
                    .scalars()
                    .all()
                )
            assert len(alerts) == 2
            assert all(a.value > 0.25 and a.model_id == scorer.model_id for a in alerts)
            assert [e.type for e in events] == ["com.billfold.risk.model_drift_detected.v1"] * 2
            data = (
                events[0].data if isinstance(events[0].data, dict) else json.loads(events[0].data)
            )
            assert data["model_id"] == format_id("rmv", scorer.model_id)
            assert data["metric"] == "psi" and data["value"] > 0.25
            assert events[0].subject == data["model_id"] and events[0].mode == "live"

    asyncio.run(run())


def test_observe_is_bounded_and_ignores_foreign_scorers(database_url: str) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            registry = ModelRegistry(
                unit_of_work, config=ScoringConfig(observe_buffer_max=100, drift_window=50)
            )

            class Foreign:
                name = "rules"
                version = 1

                def score(self, features: object) -> float:
                    return 0.5

            registry.observe(uuid.uuid4(), "test", Foreign(), {}, 0.5)
            assert await registry.flush() == 0
            assert registry.dropped_scores == 0

    asyncio.run(run())

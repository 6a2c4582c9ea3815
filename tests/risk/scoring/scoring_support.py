"""A synthetic, seeded labelled workload for the models: fraud is a large amount at night
from a new device (mostly); legitimate movements are ordinary amounts in the day from a
known device. Decisions and labels are written through the real tables."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import format_id, new_id
from billfold.risk.labels import LabelSource, record_label
from billfold.risk.models import RiskDecision
from billfold.risk.types import FeatureValue

FRAUD_RATE = 0.15


def movement_features(rng: random.Random, *, fraud: bool) -> dict[str, FeatureValue]:
    night = rng.random() < (0.8 if fraud else 0.1)
    return {
        "amount": int(rng.lognormvariate(11.0 if fraud else 8.0, 0.6)),
        "hour_of_day": rng.randrange(0, 6) if night else rng.randrange(8, 22),
        "new_device": rng.random() < (0.75 if fraud else 0.05),
        "velocity_count_user_1h": rng.randrange(3, 12) if fraud else rng.randrange(0, 3),
        "kind": rng.choice(["p2p", "withdrawal"] if fraud else ["p2p", "merchant_payment"]),
        "currency": "EUR",
        "ip_country": rng.choice(["FR", "DE", None]),
    }


def labelled_set(seed: int, count: int) -> list[tuple[dict[str, FeatureValue], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        fraud = rng.random() < FRAUD_RATE
        out.append((movement_features(rng, fraud=fraud), fraud))
    return out


def auc(pairs: list[tuple[float, bool]]) -> float:
    """The probability a random fraud scores above a random legitimate movement."""
    positives = [score for score, fraud in pairs if fraud]
    negatives = [score for score, fraud in pairs if not fraud]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


@asynccontextmanager
async def opened(database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


async def write_decisions(
    unit_of_work: UnitOfWork,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    rows: list[tuple[dict[str, FeatureValue], bool]],
    start_ns: int,
    label: bool = True,
    by_reference_every: int = 3,
) -> None:
    """One decision per row (created one µs apart), and its label when `label`: every
    `by_reference_every`-th label names its decision by reference only (no decision id)."""
    async with unit_of_work.begin() as session:
        for index, (features, fraud) in enumerate(rows):
            decision_id = new_id()
            at = start_ns + index * 1000
            reference = format_id("pay", uuid.uuid4())
            session.add(
                RiskDecision(
                    id=decision_id,
                    tenant_id=tenant_id,
                    mode=mode,
                    kind=str(features["kind"]),
                    reference=reference,
                    user_id=None,
                    payee=None,
                    merchant_id=None,
                    device_id=None,
                    amount=int(features["amount"] or 1),
                    currency="EUR",
                    action="allow",
                    score=0,
                    reasons="[]",
                    features=json.dumps(features),
                    hits="[]",
                    model_score=None,
                    ruleset_version=None,
                    created_at=at,
                )
            )
            if label:
                await session.flush()
                await record_label(
                    session,
                    tenant_id=tenant_id,
                    mode=mode,
                    reference=reference,
                    fraud=fraud,
                    source=LabelSource.SIMULATOR,
                    decision_id=None if index % by_reference_every == 0 else decision_id,
                    at_ns=at,
                )

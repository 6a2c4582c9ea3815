"""Background work of the models domain: training (incremental) and the drift check.

`train` learns, for one tenant and mode, from what arrived since the latest version of each
model (its *watermark*): the supervised model from labels changed since (with the labelled
decision's features, found through `decision_id`, else the latest decision of the label's
reference), the anomaly detector from decisions made since. Each model that learned
anything gets a new version, ``shadow`` until an operator promotes it. Reads and writes
are short transactions; the learning itself runs in a thread, off the event loop.

A label whose verdict changed is learned again (its `updated_at` moved past the watermark):
the online model follows the latest verdict. A state that cannot be loaded (a changed
signing key) makes the run start over from the first sample.

`train_all` does it for every tenant and mode with recent decisions (the worker's schedule
and `billfold risk train`); `check_drift` is `ModelRegistry.flush`, run by the registry's
own loop in the process that scores (the API).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from billfold.kit.db import UnitOfWork
from billfold.kit.ids import parse_id
from billfold.risk.scoring import repository
from billfold.risk.scoring.config import ANOMALY_NAME, SUPERVISED_NAME, ScoringConfig
from billfold.risk.scoring.errors import ModelTrainingConflict
from billfold.risk.scoring.learners import (
    REFERENCE_SIZE_MAX,
    AnomalyModel,
    ModelKind,
    Reservoir,
    SupervisedModel,
    load_river,
)
from billfold.risk.scoring.models import RiskModelVersion
from billfold.risk.scoring.registry import ModelRegistry
from billfold.risk.scoring.service import Actor, NewVersion, store_version
from billfold.risk.scoring.state import StateCodec, UnusableStateError
from billfold.risk.scoring.training import (
    RunEvaluation,
    finish,
    learn_anomaly,
    learn_supervised,
    parse_features,
)
from billfold.risk.scoring.vectors import Vector

__all__ = [
    "KINDS",
    "SCOPES_PER_RUN_MAX",
    "TrainingProgress",
    "TrainingResult",
    "check_drift",
    "train",
    "train_all",
]

log = structlog.get_logger(__name__)
KINDS: Final[tuple[ModelKind, ...]] = ("supervised", "anomaly")
SCOPES_PER_RUN_MAX: Final = 10_000
"""Most (tenant, mode) pairs one `train_all` visits."""
RECENT_S: Final = 30 * 86_400
"""`train_all` visits tenants with a decision this recent."""
_NAMES: Final[dict[ModelKind, str]] = {"supervised": SUPERVISED_NAME, "anomaly": ANOMALY_NAME}


@dataclass(frozen=True, slots=True)
class TrainingProgress:
    tenant_id: uuid.UUID
    mode: str
    kind: ModelKind
    learned: int
    """Samples learned so far in this run."""


@dataclass(frozen=True, slots=True)
class TrainingResult:
    tenant_id: uuid.UUID
    mode: str
    kind: ModelKind
    learned: int
    version: RiskModelVersion | None
    """The new shadow version; None when nothing new arrived since the last one."""


@dataclass(slots=True)
class _Cursor:
    at: int
    identifier: uuid.UUID | None
    learned: int = 0


def _seed(tenant_id: uuid.UUID, version: int) -> int:
    return (tenant_id.int ^ version) % (2**31)


async def train(
    unit_of_work: UnitOfWork,
    *,
    config: ScoringConfig,
    tenant_id: uuid.UUID,
    mode: str,
    kinds: Sequence[ModelKind] = KINDS,
    actor: Actor | None = None,
    now_ns: int,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    registry: ModelRegistry | None = None,
) -> list[TrainingResult]:
    """Train each of `kinds` from what arrived since its latest version (see above)."""
    results = [
        await _train_one(
            unit_of_work,
            config=config,
            tenant_id=tenant_id,
            mode=mode,
            kind=kind,
            actor=actor or Actor.system(),
            now_ns=now_ns,
            on_progress=on_progress,
        )
        for kind in kinds
    ]
    if registry is not None and any(result.version is not None for result in results):
        registry.invalidate(tenant_id, mode)
    return results


async def _train_one(
    unit_of_work: UnitOfWork,
    *,
    config: ScoringConfig,
    tenant_id: uuid.UUID,
    mode: str,
    kind: ModelKind,
    actor: Actor,
    now_ns: int,
    on_progress: Callable[[TrainingProgress], None] | None,
) -> TrainingResult:
    codec = StateCodec(config.signing_key)
    name = _NAMES[kind]
    async with unit_of_work.read() as session:
        latest = await repository.latest_version(session, tenant_id=tenant_id, mode=mode, name=name)
    number = 1 if latest is None else latest.version + 1
    await load_river()  # the first model made or loaded imports river
    learner, cursor, latest_trained_on = _starting_point(codec, latest, kind, tenant_id)
    evaluation = RunEvaluation()
    reservoir = Reservoir(size=REFERENCE_SIZE_MAX, seed=_seed(tenant_id, number))
    while cursor.learned < config.train_samples_max:
        limit = min(config.train_batch_size, config.train_samples_max - cursor.learned)
        fetched = await _learn_batch(
            unit_of_work, learner, cursor, evaluation, reservoir, tenant_id, mode, limit
        )
        if on_progress is not None and fetched:
            on_progress(TrainingProgress(tenant_id, mode, kind, cursor.learned))
        if fetched < limit:
            break
    if cursor.learned == 0:
        return TrainingResult(tenant_id, mode, kind, 0, None)
    metrics = await asyncio.to_thread(finish, learner, reservoir, evaluation)
    state, digest = codec.dump(learner)
    new = NewVersion(
        tenant_id=tenant_id,
        mode=mode,
        name=name,
        version=number,
        kind=kind,
        state=state,
        state_digest=digest,
        trained_on=latest_trained_on + evaluation.samples,
        watermark_at=cursor.at,
        watermark_id=cursor.identifier,
        metrics=metrics,
    )
    async with unit_of_work.begin() as session:
        row = await store_version(session, new, actor=actor, now_ns=now_ns)
    log.info("risk.model_trained", model=f"{name}@{number}", learned=cursor.learned, mode=mode)
    return TrainingResult(tenant_id, mode, kind, cursor.learned, row)


def _starting_point(
    codec: StateCodec, latest: RiskModelVersion | None, kind: ModelKind, tenant_id: uuid.UUID
) -> tuple[SupervisedModel | AnomalyModel, _Cursor, int]:
    """The learner to go on from, its watermark, and what it had learned from."""
    if latest is not None:
        try:
            learner = codec.load(latest.state, latest.state_digest)
            cursor = _Cursor(at=latest.watermark_at, identifier=latest.watermark_id)
            return learner, cursor, latest.trained_on
        except UnusableStateError as error:
            # A changed signing key or a corrupt row: learn everything again from scratch
            # rather than never train this model again.
            log.error(
                "risk.model_state_unusable",
                model=f"{latest.name}@{latest.version}",
                reason=str(error),
            )
    return _fresh(kind, tenant_id), _Cursor(at=-1, identifier=None), 0


def _fresh(kind: ModelKind, tenant_id: uuid.UUID) -> SupervisedModel | AnomalyModel:
    return SupervisedModel() if kind == "supervised" else AnomalyModel(seed=_seed(tenant_id, 0))


async def _learn_batch(
    unit_of_work: UnitOfWork,
    learner: SupervisedModel | AnomalyModel,
    cursor: _Cursor,
    evaluation: RunEvaluation,
    reservoir: Reservoir,
    tenant_id: uuid.UUID,
    mode: str,
    limit: int,
) -> int:
    """Fetch and learn one batch; advance the cursor. The rows fetched."""
    if isinstance(learner, SupervisedModel):
        labelled = await _labelled_batch(unit_of_work, cursor, tenant_id, mode, limit)
        samples, fetched = labelled
        evaluation.skipped += fetched - len(samples)
        await asyncio.to_thread(learn_supervised, learner, samples, evaluation, reservoir)
        cursor.learned += fetched
        return fetched
    async with unit_of_work.read() as session:
        decisions = await repository.decisions_after(
            session,
            tenant_id=tenant_id,
            mode=mode,
            after_at=cursor.at,
            after_id=cursor.identifier,
            limit=limit,
        )
    vectors = [v for d in decisions if (v := parse_features(d.features)) is not None]
    await asyncio.to_thread(learn_anomaly, learner, vectors, evaluation, reservoir)
    if decisions:
        cursor.at, cursor.identifier = decisions[-1].created_at, decisions[-1].decision_id
    cursor.learned += len(decisions)
    return len(decisions)


async def _labelled_batch(
    unit_of_work: UnitOfWork, cursor: _Cursor, tenant_id: uuid.UUID, mode: str, limit: int
) -> tuple[list[tuple[Vector, bool]], int]:
    async with unit_of_work.read() as session:
        rows = await repository.labelled_after(
            session,
            tenant_id=tenant_id,
            mode=mode,
            after_at=cursor.at,
            after_id=cursor.identifier,
            limit=limit,
        )
        # A label keyed by its decision's own id (`rdc_…`: the movement never had one).
        by_id = {
            row.label_id: identifier
            for row in rows
            if row.features is None and (identifier := _decision_reference(row.reference))
        }
        found = await repository.decisions_by_ids(
            session, tenant_id=tenant_id, mode=mode, ids=list(by_id.values())
        )
    samples: list[tuple[Vector, bool]] = []
    for row in rows:
        text = row.features if row.features is not None else found.get(by_id.get(row.label_id))  # type: ignore[arg-type]
        vector = parse_features(text)
        if vector is not None:
            samples.append((vector, row.fraud))
    if rows:
        cursor.at, cursor.identifier = rows[-1].updated_at, rows[-1].label_id
    return samples, len(rows)


def _decision_reference(reference: str) -> uuid.UUID | None:
    if not reference.startswith("rdc_"):
        return None
    try:
        return parse_id("rdc", reference)
    except Exception:  # a malformed reference names no decision
        return None


async def train_all(
    unit_of_work: UnitOfWork,
    *,
    config: ScoringConfig,
    now_ns: int,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    registry: ModelRegistry | None = None,
) -> list[TrainingResult]:
    """`train` every tenant and mode with a decision in the last 30 days."""
    since_ns = now_ns - RECENT_S * 1_000_000_000
    async with unit_of_work.read() as session:
        scopes = await repository.scopes_with_decisions(
            session, since_ns=since_ns, limit=SCOPES_PER_RUN_MAX
        )
    results: list[TrainingResult] = []
    for tenant_id, mode in scopes:
        try:
            results += await train(
                unit_of_work,
                config=config,
                tenant_id=tenant_id,
                mode=mode,
                now_ns=now_ns,
                on_progress=on_progress,
                registry=registry,
            )
        except ModelTrainingConflict:  # another process trained it meanwhile: fine
            log.info("risk.model_training_skipped", tenant_id=str(tenant_id), mode=mode)
    return results


async def check_drift(registry: ModelRegistry) -> int:
    """Flush the registry's observed scores through drift detection (alerts written)."""
    return await registry.flush()

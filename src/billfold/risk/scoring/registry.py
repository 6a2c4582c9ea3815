"""Where the engine finds a tenant's models (`ModelRegistry`, a `ScorerRegistry`), and where
the scores it computed go for drift detection.

**On the decision path nothing waits for I/O.** `scorers_for` answers from memory; when a
tenant's entry is older than `risk_models_refresh_interval_s` (or absent, or invalidated
after a training or a promotion) it starts a background refresh: one cheap query for the
ids and statuses of the tenant's active and shadow versions, and only when they changed,
a load of the new versions' states (digest checked, then unpickled). A process's very first
decision of a tenant is therefore scored by no model; `await registry.refresh(…)` first
where that matters (tests, warm-up).

**Which model enforces:** the active supervised version if it has learned from at least
`risk_models_labels_min` labels, else the active anomaly detector, else none. Shadow: every
shadow version, plus the active versions that do not enforce (so their scores are stored
and compared), at most `SHADOW_MODELS_MAX`.

**Drift:** `observe` appends the score to a bounded in-memory buffer (the oldest dropped
beyond `risk_models_observe_buffer_max`); `flush` (a loop every
`risk_models_drift_interval_s`, see `running`) feeds each model's `DriftMonitor` and writes
an alert (row, outbox event `com.billfold.risk.model_drift_detected.v1`, warning log) for a
drifted window, at most one per model per `risk_models_drift_cooldown_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import structlog

from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.kit.settings import Settings
from billfold.risk.scoring import repository
from billfold.risk.scoring.config import SHADOW_MODELS_MAX, ScoringConfig
from billfold.risk.scoring.drift import DriftCheck, DriftMonitor, Reference
from billfold.risk.scoring.learners import Learner, load_river
from billfold.risk.scoring.models import RiskModelVersion
from billfold.risk.scoring.service import DriftedModel, record_drift_alert
from billfold.risk.scoring.state import StateCodec, UnusableStateError
from billfold.risk.scoring.vectors import vectorize
from billfold.risk.types import Features, Scorer, ScorerSet

__all__ = ["FLUSH_SCORES_MAX", "ModelRegistry", "ModelScorer", "model_registry_from_settings"]

log = structlog.get_logger(__name__)
FLUSH_SCORES_MAX: Final = 1_000_000
"""Most buffered scores one flush takes."""
MONITORS_MAX: Final = 10_000
"""Most models whose drift windows are kept (least recently created out)."""
_VERSIONS_IN_USE_MAX: Final = 2 + 2 * SHADOW_MODELS_MAX
_EMPTY = ScorerSet()
Key = tuple[uuid.UUID, str]


class ModelScorer:
    """One loaded model version: a `Scorer` (pure; a few to a few tens of microseconds)."""

    __slots__ = (
        "kind",
        "learner",
        "mode",
        "model_id",
        "name",
        "reference",
        "status",
        "tenant_id",
        "trained_on",
        "version",
    )

    def __init__(
        self, row: RiskModelVersion, learner: Learner, reference: Reference | None
    ) -> None:
        self.name: str = row.name
        self.version: int = row.version
        self.model_id = row.id
        self.tenant_id = row.tenant_id
        self.mode = row.mode
        self.kind = row.kind
        self.status = row.status
        self.trained_on = row.trained_on
        self.reference = reference
        self.learner = learner

    def score(self, features: Features) -> float:
        return self.learner.score(vectorize(features))

    def __repr__(self) -> str:
        return f"<ModelScorer {self.name}@{self.version} {self.kind} {self.status}>"


@dataclass(slots=True)
class _Entry:
    stamps: frozenset[tuple[uuid.UUID, str]]
    scorers: dict[uuid.UUID, ModelScorer]
    scorer_set: ScorerSet
    checked_at_ns: int


@dataclass(slots=True)
class _Watch:
    monitor: DriftMonitor
    model: DriftedModel
    alerted_at_ns: int | None = None


class ModelRegistry:
    """A `ScorerRegistry` over the database's model versions (see the module docstring)."""

    def __init__(
        self, unit_of_work: UnitOfWork, *, config: ScoringConfig, clock: Clock | None = None
    ) -> None:
        self._unit_of_work = unit_of_work
        self.config = config
        self._codec = StateCodec(config.signing_key)
        self._clock: Clock = clock or SystemClock()
        self._entries: dict[Key, _Entry] = {}
        self._refreshing: dict[Key, asyncio.Task[ScorerSet]] = {}
        self._pending: deque[tuple[ModelScorer, float]] = deque(maxlen=config.observe_buffer_max)
        self._watches: OrderedDict[uuid.UUID, _Watch] = OrderedDict()
        self._loop_task: asyncio.Task[None] | None = None
        self.dropped_scores = 0
        """Scores dropped because the buffer was full (the drift check fell behind)."""

    # -- the decision path: memory only ------------------------------------------------

    def scorers_for(self, tenant_id: uuid.UUID, mode: str) -> ScorerSet:
        key = (tenant_id, mode)
        entry = self._entries.get(key)
        interval_ns = int(self.config.refresh_interval_s * NANOSECONDS_PER_SECOND)
        if entry is None or self._clock.now_ns() - entry.checked_at_ns >= interval_ns:
            self._refresh_in_background(key)
        return _EMPTY if entry is None else entry.scorer_set

    def observe(
        self, tenant_id: uuid.UUID, mode: str, scorer: Scorer, features: Features, score: float
    ) -> None:
        """Buffer the score for `flush`; features are not kept (drift is on scores)."""
        if not isinstance(scorer, ModelScorer):
            return  # not one of ours: no reference to compare with
        if len(self._pending) == self._pending.maxlen:
            self.dropped_scores += 1
        self._pending.append((scorer, score))

    # -- refreshing ------------------------------------------------------------------

    def invalidate(self, tenant_id: uuid.UUID, mode: str) -> None:
        """The next `scorers_for` refreshes (after a training or a promotion)."""
        entry = self._entries.get((tenant_id, mode))
        if entry is not None:
            entry.checked_at_ns = -(2**62)

    def _refresh_in_background(self, key: Key) -> None:
        if key in self._refreshing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous caller): `refresh` explicitly
        task = loop.create_task(self.refresh(*key))
        self._refreshing[key] = task
        task.add_done_callback(lambda done: self._refreshed(key, done))

    def _refreshed(self, key: Key, task: asyncio.Task[ScorerSet]) -> None:
        self._refreshing.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("risk.models_refresh_failed", exc_info=task.exception())

    async def refresh(self, tenant_id: uuid.UUID, mode: str) -> ScorerSet:
        """Check the tenant's versions now and load what changed; the new scorer set."""
        key = (tenant_id, mode)
        now_ns = self._clock.now_ns()
        async with self._unit_of_work.read() as session:
            stamps = frozenset(
                (stamp.id, stamp.status)
                for stamp in await repository.versions_in_use(
                    session, tenant_id=tenant_id, mode=mode, limit=_VERSIONS_IN_USE_MAX
                )
            )
            entry = self._entries.get(key)
            if entry is not None and entry.stamps == stamps:
                entry.checked_at_ns = now_ns
                return entry.scorer_set
            known = {} if entry is None else entry.scorers
            missing = [identifier for identifier, _ in stamps if identifier not in known]
            rows = await repository.load_versions(session, ids=missing)
        in_use = {identifier for identifier, _ in stamps}
        scorers = {i: s for i, s in known.items() if i in in_use}
        if rows:  # unpickling imports river the first time: on a thread, not on the loop
            await load_river()
        for row in rows:
            loaded = self._load(row)
            if loaded is not None:
                scorers[row.id] = loaded
        for identifier, status in stamps:
            if identifier in scorers:
                scorers[identifier].status = status
        scorer_set = self._choose(list(scorers.values()))
        self._entries[key] = _Entry(
            stamps=stamps, scorers=scorers, scorer_set=scorer_set, checked_at_ns=now_ns
        )
        return scorer_set

    def _load(self, row: RiskModelVersion) -> ModelScorer | None:
        try:
            learner = self._codec.load(row.state, row.state_digest)
        except UnusableStateError as error:
            log.error(
                "risk.model_state_unusable",
                model_id=format_id("rmv", row.id),
                model=f"{row.name}@{row.version}",
                reason=str(error),
            )
            return None
        try:
            reference = Reference.from_json(json.loads(row.metrics).get("reference"))
        except (ValueError, AttributeError):
            reference = None
        return ModelScorer(row, learner, reference)

    def _choose(self, scorers: Sequence[ModelScorer]) -> ScorerSet:
        active = {s.kind: s for s in scorers if s.status == "active"}
        supervised, detector = active.get("supervised"), active.get("anomaly")
        enforcing: ModelScorer | None
        if supervised is not None and supervised.trained_on >= self.config.labels_min:
            enforcing = supervised
        else:
            enforcing = detector
        shadow = [s for s in scorers if s.status == "shadow"]
        shadow += [s for s in active.values() if s is not enforcing]
        shadow.sort(key=lambda s: (s.kind, s.name, -s.version))
        return ScorerSet(enforcing=enforcing, shadow=tuple(shadow[:SHADOW_MODELS_MAX]))

    # -- drift -----------------------------------------------------------------------

    async def flush(self) -> int:
        """Feed the buffered scores to the drift monitors; write an alert per drifted
        window (one transaction). The alerts written."""
        now_ns = self._clock.now_ns()
        drifted: list[tuple[_Watch, DriftCheck]] = []
        for _ in range(min(len(self._pending), FLUSH_SCORES_MAX)):
            scorer, score = self._pending.popleft()
            watch = self._watch(scorer)
            check = watch.monitor.add(score)
            if check is not None and check.drifted and self._may_alert(watch, now_ns):
                watch.alerted_at_ns = now_ns
                drifted.append((watch, check))
        if not drifted:
            return 0
        async with self._unit_of_work.begin() as session:
            for watch, check in drifted:
                record_drift_alert(
                    session,
                    watch.model,
                    check,
                    threshold=self.config.drift_psi_max,
                    now_ns=now_ns,
                )
        return len(drifted)

    def _may_alert(self, watch: _Watch, now_ns: int) -> bool:
        if watch.alerted_at_ns is None:
            return True
        cooldown_ns = int(self.config.drift_cooldown_s * NANOSECONDS_PER_SECOND)
        return now_ns - watch.alerted_at_ns >= cooldown_ns

    def _watch(self, scorer: ModelScorer) -> _Watch:
        watch = self._watches.get(scorer.model_id)
        if watch is None:
            watch = _Watch(
                monitor=DriftMonitor(
                    scorer.reference,
                    window=self.config.drift_window,
                    psi_max=self.config.drift_psi_max,
                ),
                model=DriftedModel(
                    tenant_id=scorer.tenant_id,
                    mode=scorer.mode,
                    model_id=scorer.model_id,
                    name=scorer.name,
                    version=scorer.version,
                    kind=scorer.kind,
                ),
            )
            self._watches[scorer.model_id] = watch
            if len(self._watches) > MONITORS_MAX:
                self._watches.popitem(last=False)
        return watch

    # -- the background loop ---------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.drift_interval_s)
            try:
                await self.flush()
            except Exception:  # logged and retried: the loop must not die
                log.exception("risk.models_drift_check_failed")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ModelRegistry]:
        """The drift loop runs while the block does; the buffer is flushed at the end."""
        self._loop_task = asyncio.create_task(self._flush_forever())
        try:
            yield self
        finally:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            for task in list(self._refreshing.values()):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self.flush()


def model_registry_from_settings(
    settings: Settings, *, unit_of_work: UnitOfWork, clock: Clock | None = None
) -> ModelRegistry:
    """The registry the engine holds (`RiskEngine(…, scorers=registry)`)."""
    return ModelRegistry(unit_of_work, config=ScoringConfig.from_settings(settings), clock=clock)

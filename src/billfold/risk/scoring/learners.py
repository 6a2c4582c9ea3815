"""The two kinds of model, as river pipelines wrapped with what scoring needs.

- `SupervisedModel`: ``StandardScaler | LogisticRegression`` over the vectorized features
  (numbers log-scaled, categories one-hot: `billfold.risk.scoring.vectors`). Its score is
  P(fraud) in [0, 1]. Learns one label at a time (online SGD), so training is incremental.
- `AnomalyModel`: ``MinMaxScaler | HalfSpaceTrees`` over the numeric features only, learning
  from every decision (no labels). HalfSpaceTrees' raw score is poorly spread (typical
  points sit around 0.5 to 0.7), so the score is normalized to the fraction of a *reference*
  sample of the tenant's traffic (scored at training) that looked less anomalous: 0.5 is a
  median movement, 0.99 one stranger than 99% of them.

Both are pure when scoring (river's ``predict_proba_one`` and ``score_one`` do not learn)
and take a few microseconds (LR) to a few tens of microseconds (10 trees of height 8).

The classes are pickled into `risk_model_versions.state`: renaming this module or a class
makes stored versions unloadable (train a new one).

river is imported when a model is made (or unpickled), not with this module: it imports
scipy.stats, and `billfold serve` and `billfold worker` import this module whether or not
they will ever train. That import was 2.6 of the 6 s `import billfold.worker` took on a
slow machine. A server loading its first model imports it on a thread first
(`load_river`), so its event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib
import random
import sys
from collections.abc import Iterable, Sequence
from typing import Final, Literal

from billfold.risk.scoring.vectors import Vector, numeric_only

__all__ = [
    "REFERENCE_SIZE_MAX",
    "AnomalyModel",
    "Learner",
    "ModelKind",
    "Reservoir",
    "SupervisedModel",
    "import_river",
    "load_river",
]

ModelKind = Literal["supervised", "anomaly"]
REFERENCE_SIZE_MAX: Final = 1000
"""Most scores kept as a model's reference (for normalization and drift)."""
_LEARNING_RATE: Final = 0.02
_L2: Final = 1e-4
_TREES: Final = 10
_TREE_HEIGHT: Final = 8
_WINDOW_SIZE: Final = 250


_RIVER_MODULES: Final = (
    "river.anomaly",
    "river.compose",
    "river.linear_model",
    "river.metrics",
    "river.optim",
    "river.preprocessing",
)


def import_river() -> None:
    """Import the river modules the learners are made of (a second or more, see the module
    docstring): for a caller that runs this on a thread rather than stall its event loop
    in the first unpickling. Nothing once done."""
    for name in _RIVER_MODULES:
        importlib.import_module(name)


async def load_river() -> None:
    """`import_river` on a thread, so the event loop keeps its turns; once every module is
    imported, nothing (not even the thread hop: the registry and training call this at
    every refresh and run)."""
    if not all(name in sys.modules for name in _RIVER_MODULES):
        await asyncio.to_thread(import_river)


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


class SupervisedModel:
    """P(fraud) from labelled decisions."""

    kind: Final[ModelKind] = "supervised"

    def __init__(self) -> None:
        from river import compose, linear_model, optim, preprocessing

        self.pipeline = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(_LEARNING_RATE), l2=_L2),
        )
        self.learned = 0
        self.positives = 0

    def learn(self, vector: Vector, fraud: bool) -> None:
        self.pipeline.learn_one(vector, fraud)
        self.learned += 1
        self.positives += int(fraud)

    def score(self, vector: Vector) -> float:
        probabilities = self.pipeline.predict_proba_one(vector)
        return _clamp(float(probabilities.get(True, 0.0)))


class AnomalyModel:
    """How unusual a movement is among the tenant's own, from every decision."""

    kind: Final[ModelKind] = "anomaly"

    def __init__(self, *, seed: int) -> None:
        from river import anomaly, compose, preprocessing

        self.pipeline = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(
                n_trees=_TREES, height=_TREE_HEIGHT, window_size=_WINDOW_SIZE, seed=seed
            ),
        )
        self.learned = 0
        self.reference: list[float] = []
        """Sorted raw scores of a sample of the training traffic."""

    def learn(self, vector: Vector) -> None:
        self.pipeline.learn_one(numeric_only(vector))
        self.learned += 1

    def raw_score(self, vector: Vector) -> float:
        return float(self.pipeline.score_one(numeric_only(vector)))

    def calibrate(self, vectors: Iterable[Vector]) -> None:
        """Take the raw scores of `vectors` (a sample of recent traffic) as the reference."""
        scores = sorted(self.raw_score(vector) for vector in vectors)
        if len(scores) > REFERENCE_SIZE_MAX:  # evenly spaced quantiles of the sample
            step = len(scores) / REFERENCE_SIZE_MAX
            scores = [scores[int(i * step)] for i in range(REFERENCE_SIZE_MAX)]
        if scores:
            self.reference = scores

    def score(self, vector: Vector) -> float:
        raw = self.raw_score(vector)
        if not self.reference:
            return _clamp(raw)
        return bisect.bisect_left(self.reference, raw) / len(self.reference)


Learner = SupervisedModel | AnomalyModel


class Reservoir:
    """A uniform sample of at most `size` items of a stream (Vitter's algorithm R), seeded:
    the vectors a new version's reference scores are computed on."""

    def __init__(self, *, size: int, seed: int) -> None:
        self.size = size
        self.items: list[Vector] = []
        self._seen = 0
        self._random = random.Random(seed)

    def add(self, item: Vector) -> None:
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self._random.randrange(self._seen)
        if slot < self.size:
            self.items[slot] = item

    def __len__(self) -> int:
        return len(self.items)

    def sample(self) -> Sequence[Vector]:
        return self.items

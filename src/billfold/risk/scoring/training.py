"""Learning from samples, off the event loop: pure functions over a learner.

A run learns each sample once, in order, scoring it first with the model as it stands
(*prequential* evaluation: test, then train), so a run's metrics are honest about data the
model had not seen yet. At the end the new model scores a uniform sample of the run's
inputs: those scores are the version's reference distribution (normalization of anomaly
scores, drift detection).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from billfold.risk.scoring.drift import Reference
from billfold.risk.scoring.learners import (
    REFERENCE_SIZE_MAX,
    AnomalyModel,
    Reservoir,
    SupervisedModel,
)
from billfold.risk.scoring.vectors import Vector, vectorize

if TYPE_CHECKING:
    from river import metrics

__all__ = ["RunEvaluation", "finish", "learn_anomaly", "learn_supervised", "parse_features"]

_EPSILON = 1e-7


def parse_features(text: str | None) -> Vector | None:
    """A stored decision's features (JSON object), vectorized; None when unusable."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    usable = {
        str(name): item
        for name, item in value.items()
        if item is None or isinstance(item, bool | int | float | str)
    }
    return vectorize(usable)


def _roc_auc() -> metrics.ROCAUC:
    """A new ROC AUC; river is imported when a run is evaluated, not with this module
    (see `learners`)."""
    from river import metrics

    return metrics.ROCAUC()  # type: ignore[no-untyped-call]


@dataclass
class RunEvaluation:
    """What one training run measured (prequentially)."""

    samples: int = 0
    positives: int = 0
    skipped: int = 0
    """Labels whose decision (and so features) could not be found."""
    auc: metrics.ROCAUC = field(default_factory=_roc_auc)
    log_loss_sum: float = 0.0
    anomaly_score_sum: float = 0.0

    def to_json(self, kind: str) -> dict[str, object]:
        run: dict[str, object] = {"samples": self.samples, "skipped": self.skipped}
        if kind == "supervised":
            run["positives"] = self.positives
            both_classes = 0 < self.positives < self.samples
            auc = float(self.auc.get())  # type: ignore[no-untyped-call]
            run["auc"] = round(auc, 6) if both_classes else None
            run["log_loss"] = round(self.log_loss_sum / self.samples, 6) if self.samples else None
        else:
            mean = self.anomaly_score_sum / self.samples if self.samples else None
            run["mean_raw_score"] = None if mean is None else round(mean, 6)
        return run


def learn_supervised(
    model: SupervisedModel,
    samples: Sequence[tuple[Vector, bool]],
    evaluation: RunEvaluation,
    reservoir: Reservoir,
) -> None:
    for vector, fraud in samples:
        probability = model.score(vector)
        evaluation.auc.update(fraud, probability)  # type: ignore[no-untyped-call]
        clipped = min(max(probability, _EPSILON), 1 - _EPSILON)
        evaluation.log_loss_sum -= math.log(clipped if fraud else 1 - clipped)
        evaluation.samples += 1
        evaluation.positives += int(fraud)
        model.learn(vector, fraud)
        reservoir.add(vector)


def learn_anomaly(
    model: AnomalyModel,
    samples: Sequence[Vector],
    evaluation: RunEvaluation,
    reservoir: Reservoir,
) -> None:
    for vector in samples:
        evaluation.anomaly_score_sum += model.raw_score(vector)
        evaluation.samples += 1
        model.learn(vector)
        reservoir.add(vector)


def finish(
    model: SupervisedModel | AnomalyModel, reservoir: Reservoir, evaluation: RunEvaluation
) -> dict[str, object]:
    """Calibrate (anomaly), score the reservoir with the final model, and the metrics."""
    if isinstance(model, AnomalyModel):
        model.calibrate(reservoir.sample())
    scores = [model.score(vector) for vector in reservoir.sample()[:REFERENCE_SIZE_MAX]]
    reference = Reference.of(scores)
    return {
        "run": evaluation.to_json(model.kind),
        "learned_total": model.learned,
        "reference": None if reference is None else reference.to_json(),
    }

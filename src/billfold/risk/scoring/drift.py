"""Drift of a model's scores: the population stability index (PSI) of a recent window of
scores against a reference distribution.

The reference is the model's scores on a sample of its training data (stored with the
version, `Reference`), or, for a version with none, the first full window it scores.
Bins are the reference's deciles (fixed once), so PSI weighs every part of the
distribution alike whether the scores crowd near 0 (fraud probabilities) or spread out
(anomaly percentiles). Windows tumble: each full window is compared once, then dropped.

PSI = Σ (actual - expected) · ln(actual / expected), with each bin's share smoothed by half
a count so an empty bin is finite. The usual reading: < 0.1 stable, 0.1 to 0.25 moving,
> 0.25 drifted (`risk_models_drift_psi_max`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["BINS", "DriftCheck", "DriftMonitor", "Reference", "population_stability_index"]

BINS: Final = 10
_SMOOTHING: Final = 0.5


@dataclass(frozen=True, slots=True)
class Reference:
    """Bin edges (inner, ascending, distinct) and the expected share of scores per bin."""

    edges: tuple[float, ...]
    expected: tuple[float, ...]
    size: int

    @classmethod
    def of(cls, scores: Sequence[float]) -> Reference | None:
        """The reference of `scores`; None for fewer than 2·BINS scores or a single value."""
        if len(scores) < 2 * BINS:
            return None
        ordered = sorted(scores)
        quantiles = [ordered[len(ordered) * i // BINS] for i in range(1, BINS)]
        edges = tuple(sorted(set(quantiles)))
        if not edges or ordered[0] == ordered[-1]:
            return None
        counts = _histogram(edges, ordered)
        return cls(edges=edges, expected=_shares(counts), size=len(ordered))

    def to_json(self) -> dict[str, object]:
        return {"edges": list(self.edges), "expected": list(self.expected), "size": self.size}

    @classmethod
    def from_json(cls, value: object) -> Reference | None:
        """Lenient: a malformed stored reference is no reference (the first window is)."""
        if not isinstance(value, Mapping):
            return None
        edges, expected, size = value.get("edges"), value.get("expected"), value.get("size")
        if not (isinstance(edges, list) and isinstance(expected, list) and isinstance(size, int)):
            return None
        if len(expected) != len(edges) + 1 or not edges or len(edges) >= 2 * BINS:
            return None
        if not all(isinstance(x, int | float) for x in [*edges, *expected]):
            return None
        return cls(
            edges=tuple(float(x) for x in edges),
            expected=tuple(float(x) for x in expected),
            size=size,
        )


def _histogram(edges: Sequence[float], scores: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for score in scores:
        counts[bisect.bisect_right(edges, score)] += 1
    return counts


def _shares(counts: Sequence[int]) -> tuple[float, ...]:
    total = sum(counts) + _SMOOTHING * len(counts)
    return tuple((count + _SMOOTHING) / total for count in counts)


def population_stability_index(reference: Reference, scores: Sequence[float]) -> float:
    actual = _shares(_histogram(reference.edges, scores))
    return sum(
        (share - expected) * math.log(share / expected)
        for share, expected in zip(actual, reference.expected, strict=True)
    )


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One full window compared with the reference."""

    psi: float
    drifted: bool
    window_size: int
    reference_size: int


class DriftMonitor:
    """One model's score stream: `add` scores; a full window answers a `DriftCheck`."""

    def __init__(self, reference: Reference | None, *, window: int, psi_max: float) -> None:
        self.reference = reference
        self.window = window
        self.psi_max = psi_max
        self._scores: list[float] = []

    def add(self, score: float) -> DriftCheck | None:
        self._scores.append(score)
        if len(self._scores) < self.window:
            return None
        scores, self._scores = self._scores, []
        if self.reference is None:
            self.reference = Reference.of(scores)  # the first window is the reference
            return None
        psi = population_stability_index(self.reference, scores)
        return DriftCheck(
            psi=psi,
            drifted=psi > self.psi_max,
            window_size=len(scores),
            reference_size=self.reference.size,
        )

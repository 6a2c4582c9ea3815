"""How well the platform caught the simulated fraud, from the driver's results. Pure.

Only the run's money movements count (not the setup's funding, not sign-ins or device
bindings). An action is:

- *blocked* when the platform refused it with the problem code ``risk_blocked``;
- *challenged* when it asked for step-up authentication (``step_up_required``);
- *held for review* when the payment came back in the state ``in_review``;
- *flagged* when any of the three.

For each of these outcomes, a confusion matrix of fraud (the ground truth) against the
outcome, overall and per pattern. A pattern's matrix holds that pattern's fraud and every
legitimate action: its recall is the share of the pattern caught, its precision what an
analyst would see if that pattern were the only fraud, and its false-positive rate is the
overall one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BLOCKED_CODE",
    "OUTCOMES",
    "REVIEW_STATE",
    "STEP_UP_CODE",
    "Confusion",
    "Evaluation",
    "evaluate",
    "outcomes_of",
]

BLOCKED_CODE = "risk_blocked"
STEP_UP_CODE = "step_up_required"
REVIEW_STATE = "in_review"
OUTCOMES = ("flagged", "blocked", "challenged", "review")
_MONEY_KINDS = frozenset({"top_up", "p2p", "merchant_payment", "withdrawal", "money_request"})


@dataclass(frozen=True, slots=True)
class Confusion:
    true_positives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float | None:
        """None when nothing was flagged."""
        flagged = self.true_positives + self.false_positives
        return None if flagged == 0 else self.true_positives / flagged

    @property
    def recall(self) -> float | None:
        """None when there was no fraud."""
        fraud = self.true_positives + self.false_negatives
        return None if fraud == 0 else self.true_positives / fraud

    @property
    def false_positive_rate(self) -> float | None:
        """None when there was no legitimate action."""
        legitimate = self.false_positives + self.true_negatives
        return None if legitimate == 0 else self.false_positives / legitimate

    def add(self, *, fraud: bool, predicted: bool) -> Confusion:
        return Confusion(
            true_positives=self.true_positives + (fraud and predicted),
            false_positives=self.false_positives + (not fraud and predicted),
            true_negatives=self.true_negatives + (not fraud and not predicted),
            false_negatives=self.false_negatives + (fraud and not predicted),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.true_positives,
            "fp": self.false_positives,
            "tn": self.true_negatives,
            "fn": self.false_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "fpr": self.false_positive_rate,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    overall: Mapping[str, Confusion]
    """Outcome (`OUTCOMES`) → its confusion matrix over every money movement."""
    by_pattern: Mapping[str, Mapping[str, Confusion]]
    """Pattern → outcome → the matrix of that pattern's fraud and all legitimate actions."""
    movements: int
    fraud: int
    errors: int
    """Money movements refused for reasons other than risk (declined cards, limits, …)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "movements": self.movements,
            "fraud": self.fraud,
            "errors": self.errors,
            "overall": {name: matrix.as_dict() for name, matrix in self.overall.items()},
            "by_pattern": {
                pattern: {name: matrix.as_dict() for name, matrix in outcomes.items()}
                for pattern, outcomes in sorted(self.by_pattern.items())
            },
        }


def outcomes_of(record: Mapping[str, Any]) -> dict[str, bool]:
    """Which outcomes (`OUTCOMES`) one result record shows."""
    blocked = record.get("code") == BLOCKED_CODE
    challenged = record.get("code") == STEP_UP_CODE
    review = record.get("state") == REVIEW_STATE
    return {
        "flagged": blocked or challenged or review,
        "blocked": blocked,
        "challenged": challenged,
        "review": review,
    }


def _counted(record: Mapping[str, Any]) -> bool:
    return record.get("phase", "run") == "run" and record.get("kind") in _MONEY_KINDS


def evaluate(records: Iterable[Mapping[str, Any]]) -> Evaluation:
    """The confusion matrices of the run's money movements in `records` (the driver's JSONL
    lines, decoded)."""
    rows = [record for record in records if _counted(record)]
    overall = {name: Confusion() for name in OUTCOMES}
    legitimate = {name: Confusion() for name in OUTCOMES}
    fraud_by_pattern: dict[str, dict[str, Confusion]] = {}
    errors = 0
    for record in rows:
        fraud = bool(record.get("fraud"))
        outcomes = outcomes_of(record)
        status = record.get("status")
        if not outcomes["flagged"] and isinstance(status, int) and status >= 400:
            errors += 1
        for name, predicted in outcomes.items():
            overall[name] = overall[name].add(fraud=fraud, predicted=predicted)
            if not fraud:
                legitimate[name] = legitimate[name].add(fraud=False, predicted=predicted)
        if fraud:
            pattern = str(record.get("pattern") or "unknown")
            matrices = fraud_by_pattern.setdefault(pattern, {n: Confusion() for n in OUTCOMES})
            for name, predicted in outcomes.items():
                matrices[name] = matrices[name].add(fraud=True, predicted=predicted)
    by_pattern = {
        pattern: {name: _merged(matrices[name], legitimate[name]) for name in OUTCOMES}
        for pattern, matrices in fraud_by_pattern.items()
    }
    return Evaluation(
        overall=overall,
        by_pattern=by_pattern,
        movements=len(rows),
        fraud=sum(1 for record in rows if record.get("fraud")),
        errors=errors,
    )


def _merged(fraud: Confusion, legitimate: Confusion) -> Confusion:
    return Confusion(
        true_positives=fraud.true_positives,
        false_negatives=fraud.false_negatives,
        false_positives=legitimate.false_positives,
        true_negatives=legitimate.true_negatives,
    )

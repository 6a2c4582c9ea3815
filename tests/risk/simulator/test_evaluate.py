"""Evaluation against a hand-computed example."""

from __future__ import annotations

from typing import Any

import pytest

from billfold.risk.simulator.evaluate import Confusion, evaluate


def _record(kind: str, *, fraud: bool, pattern: str | None = None, **answer: Any) -> dict[str, Any]:
    return {"phase": "run", "kind": kind, "fraud": fraud, "pattern": pattern, **answer}


RECORDS = [
    # Account takeover: 2 transfers, one blocked, one through.
    _record("p2p", fraud=True, pattern="account_takeover", status=403, code="risk_blocked"),
    _record("p2p", fraud=True, pattern="account_takeover", status=201, state="succeeded"),
    # Card testing: 3 top-ups: one challenged, one held, one declined by the card (missed).
    _record("top_up", fraud=True, pattern="card_testing", status=403, code="step_up_required"),
    _record("top_up", fraud=True, pattern="card_testing", status=202, state="in_review"),
    _record("top_up", fraud=True, pattern="card_testing", status=201, state="failed"),
    # Legitimate: 5 movements, one wrongly held for review, one refused for funds.
    _record("merchant_payment", fraud=False, status=200, state="in_review"),
    _record("merchant_payment", fraud=False, status=200, state="captured"),
    _record("p2p", fraud=False, status=422, code="insufficient_funds"),
    _record("withdrawal", fraud=False, status=201, state="processing"),
    _record("money_request", fraud=False, status=200, state="succeeded"),
    # Not counted: sign-ins, device bindings, setup.
    _record("login_failed", fraud=True, pattern="account_takeover", status=401),
    _record("bind_device", fraud=True, pattern="account_takeover", status=201),
    {"phase": "setup", "kind": "funding", "fraud": False, "state": "in_review"},
]


def test_overall_confusion_matrices_match_the_hand_count() -> None:
    evaluation = evaluate(RECORDS)
    assert evaluation.movements == 10
    assert evaluation.fraud == 5
    assert evaluation.errors == 1  # the insufficient funds; declined cards answer 201 failed
    flagged = evaluation.overall["flagged"]
    assert flagged == Confusion(
        true_positives=3, false_positives=1, true_negatives=4, false_negatives=2
    )
    assert flagged.precision == pytest.approx(3 / 4)
    assert flagged.recall == pytest.approx(3 / 5)
    assert flagged.false_positive_rate == pytest.approx(1 / 5)
    assert evaluation.overall["blocked"] == Confusion(1, 0, 5, 4)
    assert evaluation.overall["challenged"] == Confusion(1, 0, 5, 4)
    assert evaluation.overall["review"] == Confusion(1, 1, 4, 4)


def test_per_pattern_matrices_hold_the_pattern_and_every_legitimate_movement() -> None:
    by_pattern = evaluate(RECORDS).by_pattern
    assert set(by_pattern) == {"account_takeover", "card_testing"}
    takeover = by_pattern["account_takeover"]["flagged"]
    assert takeover == Confusion(
        true_positives=1, false_positives=1, true_negatives=4, false_negatives=1
    )
    assert takeover.recall == pytest.approx(1 / 2)
    assert takeover.precision == pytest.approx(1 / 2)
    testing = by_pattern["card_testing"]
    assert testing["flagged"].recall == pytest.approx(2 / 3)
    assert testing["blocked"].true_positives == 0
    assert testing["review"].true_positives == 1


def test_undefined_ratios_are_none_not_zero() -> None:
    empty = evaluate([])
    assert empty.overall["flagged"].precision is None
    assert empty.overall["flagged"].recall is None
    assert empty.overall["flagged"].false_positive_rate is None
    assert empty.as_dict()["by_pattern"] == {}

"""Backtests: the stored decisions' features replayed through a rule set, to see what it
would have decided before it enforces anything (``billfold risk backtest``).

The rule set is the tenant's active one (``active``), the one in force at a ruleset
version (a number), or a JSON file of rules shaped like ``POST /v1/risk/rules`` bodies (a
list, or ``{"rules": [...]}``). Each stored decision since a time is replayed: its
features through the rules (shadow rules reported, never enforced), its stored model score
against the model thresholds, and a step-up it carried (recorded in its reasons) still
satisfies a challenge. The report counts hits per rule, the would-be actions, the outcomes
that change, and, where ``risk_labels`` say whether a movement was fraud, precision and
recall of "flagged" (review or block) for the replayed and the stored decisions.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.db import UnitOfWork
from billfold.kit.errors import ValidationFailed, invariant
from billfold.risk.models import RiskDecision
from billfold.risk.repository import DecisionRepository, RuleRepository
from billfold.risk.rules import FALLBACK_FEATURE_NAMES, CompiledRule, validate_expression
from billfold.risk.service import (
    MODEL_BLOCK_SCORE_DEFAULT,
    MODEL_REVIEW_SCORE_DEFAULT,
    STEP_UP_SATISFIED,
    ModelOutcome,
    combine,
    compile_rules,
    evaluate_rules,
)
from billfold.risk.types import Action

__all__ = [
    "BATCH_SIZE",
    "RULES_IN_FILE_MAX",
    "BacktestReport",
    "InvalidRuleset",
    "LoadedRuleset",
    "Metrics",
    "load_ruleset",
    "run_backtest",
]

BATCH_SIZE = 500
RULES_IN_FILE_MAX = 1_000
RULESET_FILE_BYTES_MAX = 5_000_000
_FILE_RULE_NAMESPACE = uuid.UUID("8d8c7f0e-4a53-4f4b-9a1e-2f0b6c1d9e77")
_FLAGGED = (Action.REVIEW, Action.BLOCK)


class InvalidRuleset(ValidationFailed):
    code = "invalid_ruleset"
    title = "Invalid ruleset"


@dataclass(frozen=True, slots=True)
class LoadedRuleset:
    label: str
    """``active (version N)``, ``version N`` or the file's name."""
    rules: tuple[CompiledRule, ...]


async def load_ruleset(
    session: AsyncSession, spec: str, *, tenant_id: uuid.UUID | None, mode: str | None
) -> LoadedRuleset:
    """The rule set ``spec`` names (see the module doc)."""
    if spec == "active" or spec.isdigit():
        if tenant_id is None or mode is None:
            raise InvalidRuleset("A stored rule set needs --tenant and --mode.")
        rules = RuleRepository(session)
        if spec == "active":
            rows = await rules.active(tenant_id=tenant_id, mode=mode)
            return LoadedRuleset(label="active", rules=compile_rules(rows))
        rows = await rules.active_at(tenant_id=tenant_id, mode=mode, ruleset_version=int(spec))
        return LoadedRuleset(label=f"version {int(spec)}", rules=compile_rules(rows))
    return rules_from_file(Path(spec))


def rules_from_file(path: Path) -> LoadedRuleset:
    """Rules from a JSON file of ``POST /v1/risk/rules`` bodies, validated like them."""
    from billfold.risk.schemas import RuleCreateRequest

    if not path.is_file() or path.stat().st_size > RULESET_FILE_BYTES_MAX:
        raise InvalidRuleset(f"No rules file {path} (of at most {RULESET_FILE_BYTES_MAX} bytes).")
    try:
        loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRuleset(f"{path} is not JSON: {error}") from None
    items = loaded.get("rules") if isinstance(loaded, dict) else loaded
    if not isinstance(items, list) or not 1 <= len(items) <= RULES_IN_FILE_MAX:
        raise InvalidRuleset(f"A rules file holds a list of 1 to {RULES_IN_FILE_MAX} rules.")
    compiled: list[CompiledRule] = []
    for index, item in enumerate(items):
        try:
            body = RuleCreateRequest.model_validate(item)
        except ValidationError as error:
            raise InvalidRuleset(f"Rule {index}: {error.errors()[0]['msg']}") from None
        program = validate_expression(body.expression, feature_names=FALLBACK_FEATURE_NAMES)
        compiled.append(
            CompiledRule(
                rule_id=uuid.uuid5(_FILE_RULE_NAMESPACE, body.name),
                version=1,
                name=body.name,
                action=body.action,
                score=body.score,
                reason=body.reason,
                shadow=body.enforcement == "shadow",
                responses=tuple(body.responses),
                program=program,
                variables=tuple(program.variables()),
            )
        )
    return LoadedRuleset(label=path.name, rules=tuple(compiled))


@dataclass
class Metrics:
    """Confusion counts of "flagged" (review or block) against fraud labels."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0

    def add(self, *, flagged: bool, fraud: bool) -> None:
        if flagged and fraud:
            self.true_positives += 1
        elif flagged:
            self.false_positives += 1
        elif fraud:
            self.false_negatives += 1
        else:
            self.true_negatives += 1

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_positives
        return None if flagged == 0 else self.true_positives / flagged

    @property
    def recall(self) -> float | None:
        fraud = self.true_positives + self.false_negatives
        return None if fraud == 0 else self.true_positives / fraud

    def summary(self) -> dict[str, int | float | None]:
        return {
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "true_negatives": self.true_negatives,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass
class BacktestReport:
    ruleset: str
    decisions: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    """Rule name → hits (shadow rules included)."""
    shadow_rules: set[str] = field(default_factory=set)
    would_be: Counter[str] = field(default_factory=Counter)
    """Action → how many replayed decisions would have it."""
    decided: Counter[str] = field(default_factory=Counter)
    """Action → how many stored decisions had it."""
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(stored action, would-be action) → count, for the outcomes that change."""
    labelled: int = 0
    replayed_metrics: Metrics = field(default_factory=Metrics)
    stored_metrics: Metrics = field(default_factory=Metrics)

    @property
    def changed(self) -> int:
        return sum(self.changes.values())

    def to_json(self) -> dict[str, object]:
        return {
            "ruleset": self.ruleset,
            "decisions": self.decisions,
            "hits": {
                name: {"hits": count, "shadow": name in self.shadow_rules}
                for name, count in sorted(self.hits.items())
            },
            "would_be": {action.value: self.would_be[action.value] for action in Action},
            "decided": {action.value: self.decided[action.value] for action in Action},
            "changed": self.changed,
            "changes": [
                {"from": before, "to": after, "count": count}
                for (before, after), count in sorted(self.changes.items())
            ],
            "labelled": self.labelled,
            "replayed": self.replayed_metrics.summary(),
            "stored": self.stored_metrics.summary(),
        }


async def run_backtest(
    unit_of_work: UnitOfWork,
    ruleset: LoadedRuleset,
    *,
    tenant_id: uuid.UUID | None,
    mode: str | None,
    since_ns: int,
    model_review_score: float = MODEL_REVIEW_SCORE_DEFAULT,
    model_block_score: float = MODEL_BLOCK_SCORE_DEFAULT,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> BacktestReport:
    """Replay every decision since ``since_ns`` (of the tenant and mode, or all), a bounded
    batch per read transaction; ``on_batch(n)`` after each batch of ``n``."""
    invariant(1 <= batch_size <= 10 * BATCH_SIZE, "batches are bounded")
    report = BacktestReport(ruleset=ruleset.label)
    report.shadow_rules = {rule.name for rule in ruleset.rules if rule.shadow}
    after_id: uuid.UUID | None = None
    while True:
        async with unit_of_work.read() as session:
            repository = DecisionRepository(session)
            rows = await repository.since(
                tenant_id=tenant_id,
                mode=mode,
                since_ns=since_ns,
                after_id=after_id,
                limit=batch_size,
            )
            labels = await repository.fraud_labels(decision_ids=[row.id for row in rows])
        if not rows:
            return report
        for row in rows:
            _replay(report, ruleset, row, labels.get(row.id), model_review_score, model_block_score)
        after_id = rows[-1].id
        if on_batch is not None:
            on_batch(len(rows))


def _replay(
    report: BacktestReport,
    ruleset: LoadedRuleset,
    row: RiskDecision,
    fraud: bool | None,
    review_score: float,
    block_score: float,
) -> None:
    features = json.loads(row.features)
    hits = evaluate_rules(ruleset.rules, features)
    decision = combine(
        decision_id=row.id,
        hits=hits,
        model=_model(row.model_score, review_score, block_score),
        features=features,
        ruleset_version=None,
        step_up_verified=STEP_UP_SATISFIED in json.loads(row.reasons),
    )
    report.decisions += 1
    report.hits.update(hit.name for hit in hits)
    report.would_be[decision.action.value] += 1
    report.decided[row.action] += 1
    if decision.action.value != row.action:
        report.changes[(row.action, decision.action.value)] += 1
    if fraud is not None:
        report.labelled += 1
        report.replayed_metrics.add(flagged=decision.action in _FLAGGED, fraud=fraud)
        report.stored_metrics.add(flagged=Action(row.action) in _FLAGGED, fraud=fraud)


def _model(score: float | None, review_score: float, block_score: float) -> ModelOutcome:
    if score is None or score < review_score:
        return ModelOutcome(score=score, action=Action.ALLOW, reason=None)
    action = Action.BLOCK if score >= block_score else Action.REVIEW
    return ModelOutcome(score=score, action=action, reason=f"model {score:.3f}")

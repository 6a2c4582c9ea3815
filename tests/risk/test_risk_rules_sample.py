"""The sample a rule is type-checked on when saved has the types the engine binds at
decision time (README, *Risk rules*: saving a rule "evaluates to a bool on sample
features"): a rule the sample accepts does not fail on every real movement, and a rule
that works on real movements is not refused."""

from __future__ import annotations

import pytest

from billfold.risk.errors import InvalidRule
from billfold.risk.features.catalogue import FEATURES
from billfold.risk.rules import (
    FALLBACK_FEATURE_NAMES,
    FALLBACK_FEATURE_SAMPLE,
    RuleEvaluationError,
    compile_expression,
    evaluate,
    validate_expression,
)

_PYTHON_TYPES = {"int": int, "float": float, "bool": bool, "string": str}


def test_the_sample_has_every_feature_with_its_catalogued_type() -> None:
    assert set(FALLBACK_FEATURE_SAMPLE) == set(FEATURES)
    for name, spec in FEATURES.items():
        assert type(FALLBACK_FEATURE_SAMPLE[name]) is _PYTHON_TYPES[spec.type], name


def test_double_arithmetic_on_the_account_age_is_saved_and_holds() -> None:
    expression = "account_age_days + 1.0 < 8.0"
    program = validate_expression(expression, feature_names=FALLBACK_FEATURE_NAMES)
    assert evaluate(program, {"account_age_days": 3.5}) is True


def test_int_arithmetic_on_the_account_age_is_refused_as_it_would_never_hit() -> None:
    expression = "account_age_days + 1 < 8"
    program = compile_expression(expression, feature_names=FALLBACK_FEATURE_NAMES)
    with pytest.raises(RuleEvaluationError):
        evaluate(program, {"account_age_days": 3.5})  # what the engine binds: a float
    with pytest.raises(InvalidRule):
        validate_expression(expression, feature_names=FALLBACK_FEATURE_NAMES)

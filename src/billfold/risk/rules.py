"""Risk rules in CEL (the Common Expression Language) over a movement's features.

An expression sees **every feature as a top-level variable** (``amount_major > 1000.0 &&
new_device``), not as fields of one ``features`` map: rules read like the feature list, and
the set of variables an expression uses is known at compile time (``Program.variables()``)
so an unknown name is refused when the rule is saved instead of never hitting.

Every feature a rule uses is bound on every evaluation, ``null`` where the source has no
value (``ip_country`` of a movement without an IP): the CEL bindings raise on an unbound
variable instead of treating it as absent. CEL does not coerce types, so a comparison with ``null``
or arithmetic mixing ``int`` and ``double`` is an evaluation error, which the engine counts
as *no hit* (and logs with the rule id). Guard nullable features: ``has_ip &&
ip_country != residence_country``.

Saving a rule validates it (422 ``invalid_rule`` otherwise): at most
``EXPRESSION_LENGTH_MAX`` characters, it parses, it names only known features, it uses no
comprehension macro (``map``, ``filter``, ``all``, ``exists``, ``exists_one``: features are
scalars, and nested comprehensions over list literals are how an expression would take
exponential time on the decision path), and it evaluates to a bool on a sample of features.

The known names come from the engine's ``FeatureSource.names``; ``FALLBACK_FEATURE_SAMPLE``
lists the names ``billfold.risk.features`` computes, each with a typical value, for the
type check (and as the known set wherever no source is at hand, such as the CLI's
backtest). A feature the sample does not know is checked by name only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import cel

from billfold.risk.errors import InvalidRule
from billfold.risk.types import Action, FeatureValue, Response

__all__ = [
    "EXPRESSION_LENGTH_MAX",
    "FALLBACK_FEATURE_NAMES",
    "FALLBACK_FEATURE_SAMPLE",
    "PATTERN_COMPILE_BUDGET_S",
    "CompiledRule",
    "RuleEvaluationError",
    "bind_features",
    "compile_expression",
    "evaluate",
    "validate_expression",
]

EXPRESSION_LENGTH_MAX: Final = 2_000
_WINDOWS = ("1m", "1h", "24h", "30d")
_MACROS = re.compile(r"\b(map|filter|all|exists|exists_one)\b", re.ASCII)
_NOT_CODE = re.compile(
    r"//[^\n]*"  # a comment, to the end of its line
    r"|[bB]?[rR](?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n\r]*'|\"[^\"\n\r]*\")"  # raw: no escapes
    r"|[bB]?(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\""
    r"|'(?:[^'\\\n\r]|\\.)*'|\"(?:[^\"\\\n\r]|\\.)*\")",
    re.DOTALL,
)
"""What CEL's lexer reads as a comment or a string or bytes literal (raw, triple-quoted or
not), matched from its start as the lexer does: a word in one is not a macro. Reading a
raw string's backslash as an escape, or a quote in a comment as a string's start, took
code for text and let a macro through."""


_MATCHES = re.compile(r"\bmatches\b", re.ASCII)
_MATCHES_LITERAL = re.compile(r"\.\s*matches\s*\(\s*\"(\d+)\"\s*\)", re.ASCII)
"""A `.matches(…)` call whose one argument is a string literal, once literals are numbered."""
_PATTERN_PROBE: Final = cel.compile("text.matches(pattern)")
PATTERN_COMPILE_BUDGET_S: Final = 0.002
"""Longest a `matches` pattern may take to compile. CEL compiles the pattern at every
evaluation, on the event loop: ordinary patterns take well under 0.2 ms, while counted
repetitions such as `\\w{1,100}\\w{1,100}` take 50 ms each time (a rule of several, even a
shadow one, would stall every decision of the process, every tenant's)."""
_PATTERN_TRIES: Final = 3
"""A pattern over budget is timed again, so a moment's contention refuses nothing."""


def _windowed(prefix: str, value: FeatureValue) -> dict[str, FeatureValue]:
    return {f"{prefix}_{window}": value for window in _WINDOWS}


FALLBACK_FEATURE_SAMPLE: Final[Mapping[str, FeatureValue]] = MappingProxyType(
    {
        "kind": "p2p",
        "amount": 12_500,
        "currency": "USD",
        "amount_major": 125.0,
        **_windowed("user_count", 3),
        **_windowed("user_amount", 30_000),
        **_windowed("device_count", 2),
        **_windowed("device_amount", 20_000),
        **_windowed("payee_count", 1),
        **_windowed("payee_amount", 10_000),
        **_windowed("ip_count", 2),
        **_windowed("ip_amount", 20_000),
        "user_received_amount_24h": 5_000,
        "amount_zscore": 0.4,
        "user_history_count": 12,
        "new_device": False,
        "new_payee": True,
        "account_age_days": 40.0,
        "kyc_tier": 1,
        "ip_country": "US",
        "residence_country": "US",
        "ip_country_mismatch": False,
        "hour_of_day": 14,
        "day_of_week": 2,
        "failed_logins_24h": 0,
        "mfa_failures_24h": 0,
        "has_device": True,
        "has_ip": True,
    }
)
"""What ``billfold.risk.features`` computes (names as its helper documents them), each with
a typical value of its type: the type check of a rule on save evaluates it on these."""
FALLBACK_FEATURE_NAMES: Final = frozenset(FALLBACK_FEATURE_SAMPLE)


class RuleEvaluationError(Exception):
    """An expression failed on some features (a type error, a null): no hit."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An active rule version, compiled once and evaluated on every decision."""

    rule_id: Any  # uuid.UUID; Any keeps this module free of the ORM
    version: int
    name: str
    action: Action
    score: int
    reason: str
    shadow: bool
    responses: tuple[Response, ...]
    program: Any
    """The ``cel.Program``."""
    variables: tuple[str, ...]
    """The names the expression uses: only these are converted for CEL on each evaluation
    (converting every feature costs about 90 µs, the ones used about 5)."""

    def holds(self, features: Mapping[str, FeatureValue]) -> bool:
        """Whether the rule holds on ``features`` (a name it uses but absent there is null)."""
        return evaluate(self.program, {name: features.get(name) for name in self.variables})


def compile_expression(expression: str, *, feature_names: Iterable[str]) -> Any:
    """The compiled ``cel.Program``, or :class:`InvalidRule` with why not (length, syntax,
    unknown names, macros)."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidRule("A rule needs an expression.")
    if len(expression) > EXPRESSION_LENGTH_MAX:
        raise InvalidRule(f"An expression has at most {EXPRESSION_LENGTH_MAX} characters.")
    if "\x00" in expression:
        raise InvalidRule("An expression holds no NUL character.")
    if _MACROS.search(_NOT_CODE.sub('""', expression)):
        raise InvalidRule("Comprehension macros (map, filter, all, exists) are not allowed.")
    for pattern in _patterns(expression):
        _check_pattern(pattern)
    try:
        program = cel.compile(expression)
        used = frozenset(program.variables())
    except ValueError as error:
        raise InvalidRule(f"The expression does not parse: {_first_line(error)}") from None
    except Exception as error:  # the bindings' other failures: still the input's fault
        raise InvalidRule(f"The expression does not compile: {_first_line(error)}") from None
    unknown = sorted(used - frozenset(feature_names))
    if unknown:
        raise InvalidRule(
            f"Unknown feature names: {', '.join(unknown[:10])}.", unknown_features=unknown[:10]
        )
    return program


def _patterns(expression: str) -> list[str]:
    """The patterns the expression's `matches` calls use. Each must be one string literal
    (`kind.matches('^with')`): a pattern built as the rule runs could not be checked."""
    literals: list[str] = []

    def numbered(token: re.Match[str]) -> str:
        if token.group().startswith("//"):
            return " "
        literals.append(token.group())
        return f'"{len(literals) - 1}"'

    code = _NOT_CODE.sub(numbered, expression)
    calls = list(_MATCHES_LITERAL.finditer(code))
    if len(calls) != len(_MATCHES.findall(code)):
        raise InvalidRule("`matches` takes one string literal: `feature.matches('^…$')`.")
    try:
        patterns = [cel.evaluate(literals[int(call.group(1))]) for call in calls]
    except Exception as error:  # a literal CEL's own lexer refuses
        raise InvalidRule(f"The expression does not parse: {_first_line(error)}") from None
    if not all(isinstance(pattern, str) for pattern in patterns):
        raise InvalidRule("A `matches` pattern is a string, not bytes.")
    return patterns


def _check_pattern(pattern: str) -> None:
    """A valid pattern (RE2 syntax) that compiles within :data:`PATTERN_COMPILE_BUDGET_S`."""
    for _ in range(_PATTERN_TRIES):
        started = time.perf_counter()
        try:
            _PATTERN_PROBE.execute({"text": "", "pattern": pattern})
        except Exception as error:
            raise InvalidRule(
                f"The `matches` pattern {pattern[:40]!r} is not a valid regular expression:"
                f" {_first_line(error)}"
            ) from None
        if time.perf_counter() - started <= PATTERN_COMPILE_BUDGET_S:
            return
    raise InvalidRule(
        f"The `matches` pattern {pattern[:40]!r} is too costly: it takes more than"
        f" {PATTERN_COMPILE_BUDGET_S * 1000:g} ms to compile, at every evaluation."
    )


def validate_expression(
    expression: str,
    *,
    feature_names: Iterable[str],
    sample: Mapping[str, FeatureValue] = FALLBACK_FEATURE_SAMPLE,
) -> Any:
    """Compile the expression and check it evaluates to a bool on ``sample`` (when the
    sample covers every name it uses); the program, or :class:`InvalidRule`."""
    names = frozenset(feature_names)
    program = compile_expression(expression, feature_names=names)
    used = frozenset(program.variables())
    if not used <= frozenset(sample):
        return program  # a feature of unknown type: checked by name only
    try:
        result = program.execute(bind_features(sample, names))
    except Exception as error:
        raise InvalidRule(
            f"The expression fails on sample features: {_first_line(error)}"
        ) from None
    if not isinstance(result, bool):
        raise InvalidRule(f"The expression evaluates to {type(result).__name__}, not a bool.")
    return program


def bind_features(
    features: Mapping[str, FeatureValue], names: Iterable[str]
) -> dict[str, FeatureValue]:
    """Every known name bound: the feature's value, None where it has none."""
    bound = dict.fromkeys(names)
    bound.update(features)
    return bound


def evaluate(program: Any, variables: Mapping[str, FeatureValue]) -> bool:
    """Whether the rule holds; :class:`RuleEvaluationError` when it cannot be evaluated or
    its result is not a bool."""
    try:
        result = program.execute(dict(variables))
    except Exception as error:
        raise RuleEvaluationError(_first_line(error)) from None
    if not isinstance(result, bool):
        raise RuleEvaluationError(f"evaluated to {type(result).__name__}, not a bool")
    return result


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]

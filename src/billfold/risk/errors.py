"""Risk's typed errors, rendered as problem+json with a stable ``code``::

BillfoldError
├── ValidationFailed
│   ├── InvalidRule              422 invalid_rule
│   └── InvalidRuleChange        422 invalid_rule_change
├── NotFound
│   ├── RuleNotFound             404 rule_not_found
│   └── DecisionNotFound         404 decision_not_found
└── Conflict
    ├── RuleNameTaken            409 rule_name_taken
    └── RuleDisabled             409 rule_already_disabled
"""

# Errors are named for what went wrong, as HTTP names them, not *Error.

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ValidationFailed

__all__ = [
    "DecisionNotFound",
    "InvalidRule",
    "InvalidRuleChange",
    "RuleChangePending",
    "RuleDisabled",
    "RuleNameTaken",
    "RuleNotFound",
]


class InvalidRule(ValidationFailed):
    """The expression is too long, does not parse, names unknown features, uses a macro,
    or does not evaluate to a bool on sample features."""

    code = "invalid_rule"
    title = "Invalid rule"


class InvalidRuleChange(ValidationFailed):
    """A four-eyes request for a rule version that is not (or no longer) waiting for one."""

    code = "invalid_rule_change"
    title = "Invalid rule change"


class RuleNotFound(NotFound):
    code = "rule_not_found"
    title = "Rule not found"


class DecisionNotFound(NotFound):
    code = "decision_not_found"
    title = "Decision not found"


class RuleNameTaken(Conflict):
    code = "rule_name_taken"
    title = "Rule name taken"


class RuleChangePending(Conflict):
    code = "rule_change_pending"
    title = "Rule change pending"


class RuleDisabled(Conflict):
    code = "rule_already_disabled"
    title = "Rule already disabled"

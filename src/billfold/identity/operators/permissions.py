"""Roles, permissions and the matrix between them: least privilege for back-office people.

An operator holds one or more roles; what it may do is the union of their permissions.
Routes require permissions, never roles, so the matrix below is the one place to read (and
change) who may do what.

=========================  =====  =======  ============  ==================  =======
permission                 admin  support  risk_analyst  compliance_officer  finance
=========================  =====  =======  ============  ==================  =======
operators.manage             x
ledger.adjust.request                                                           x
ledger.adjust.approve                                                           x
account.unfreeze.request              x          x                x
account.unfreeze.approve                         x                x
limits.increase.request               x          x                x
limits.increase.approve                                           x
limits.tiers.request                  x          x                x
limits.tiers.approve                                              x
keys.rotate.request          x
keys.rotate.approve          x
cases.review                                     x                x
risk.reverse.request                  x          x                x
risk.reverse.approve                             x                x
risk.models.manage                               x
reports.read                 x                   x                x               x
audit.read                   x                                    x
risk.rules.manage                                x
risk.rules.approve                               x                x
risk.models.approve                              x                x
=========================  =====  =======  ============  ==================  =======

Why it is shaped so:

- **support cannot move money**: it may only *ask* for an unfreeze, a limit increase (one
  holder's, or the tenant's own figures for a KYC tier: ``limits.tiers.*``, asked and
  approved by the same roles as one holder's) or the reversal of an automated risk
  response, which a risk analyst or compliance officer must approve; it reads no reports.
- **finance** requests and approves manual ledger adjustments, and nothing else that changes
  state; an adjustment therefore needs two finance operators.
- **admin** and **compliance_officer** read the tenant's audit log (``audit.read``).
- **risk_analyst** writes the risk rules (``risk.rules.manage``); a new or changed
  *enforcing* rule, a version replacing one, and disabling one take effect once a
  different risk analyst or a compliance officer approves (``risk.rules.approve``); shadow
  rules that replace no enforcing version take effect at once.
- **risk_analyst** alone trains risk models and asks for a version's promotion
  (``risk.models.manage``); the promotion (an active model may send movements to review
  or block them) takes effect once a different risk analyst or a compliance officer
  approves it (``risk.models.approve``); anyone with ``reports.read`` reads model
  versions, their metrics and drift alerts.
- **admin** manages operators and key rotations but moves no money. Holding an approve
  permission never lets anyone approve their own request: the approver is always a
  *different* operator (enforced in ``approvals``, not here).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "ACTION_PERMISSIONS",
    "ROLE_PERMISSIONS",
    "ActionPermissions",
    "ActionType",
    "Permission",
    "Role",
    "approvable_actions",
    "permissions_of",
    "visible_actions",
]


class Role(enum.StrEnum):
    """The fixed set of back-office roles. Stored by value: the names never change."""

    ADMIN = "admin"
    SUPPORT = "support"
    RISK_ANALYST = "risk_analyst"
    COMPLIANCE_OFFICER = "compliance_officer"
    FINANCE = "finance"


class Permission(enum.StrEnum):
    """What a route may require of an operator."""

    OPERATORS_MANAGE = "operators.manage"
    LEDGER_ADJUST_REQUEST = "ledger.adjust.request"
    LEDGER_ADJUST_APPROVE = "ledger.adjust.approve"
    ACCOUNT_UNFREEZE_REQUEST = "account.unfreeze.request"
    ACCOUNT_UNFREEZE_APPROVE = "account.unfreeze.approve"
    LIMITS_INCREASE_REQUEST = "limits.increase.request"
    LIMITS_INCREASE_APPROVE = "limits.increase.approve"
    LIMITS_TIERS_REQUEST = "limits.tiers.request"
    LIMITS_TIERS_APPROVE = "limits.tiers.approve"
    KEYS_ROTATE_REQUEST = "keys.rotate.request"
    KEYS_ROTATE_APPROVE = "keys.rotate.approve"
    CASES_REVIEW = "cases.review"
    RISK_REVERSE_REQUEST = "risk.reverse.request"
    RISK_REVERSE_APPROVE = "risk.reverse.approve"
    RISK_MODELS_MANAGE = "risk.models.manage"
    REPORTS_READ = "reports.read"
    AUDIT_READ = "audit.read"
    RISK_RULES_MANAGE = "risk.rules.manage"
    RISK_RULES_APPROVE = "risk.rules.approve"
    RISK_MODELS_APPROVE = "risk.models.approve"


class ActionType(enum.StrEnum):
    """The sensitive actions that take effect only once a second operator approves them."""

    LEDGER_ADJUSTMENT = "ledger_adjustment"
    ACCOUNT_UNFREEZE = "account_unfreeze"
    LIMIT_INCREASE = "limit_increase"
    KEY_ROTATION = "key_rotation"
    RISK_RULE_CHANGE = "risk_rule_change"
    """An enforcing risk rule version made active (requested by ``POST /v1/risk/rules``
    and ``POST /v1/risk/rules/{id}/versions``, never through ``POST /v1/approvals``)."""
    RISK_RESPONSE_REVERSAL = "risk_response_reversal"
    """Undo an automated risk response (unfreeze, restore limits, stop holding)."""
    RISK_MODEL_PROMOTION = "risk_model_promotion"
    """A risk model version made active (requested by ``POST /v1/risk/models/{id}/promote``,
    never through ``POST /v1/approvals``)."""
    TIER_LIMITS_CHANGE = "tier_limits_change"
    """The tenant's own spending limits for one KYC tier in one currency and mode, set or
    removed: raising them raises every holder's of that tier, so it takes four eyes like
    one holder's ``limit_increase``."""


@dataclass(frozen=True, slots=True)
class ActionPermissions:
    """The permission to ask for an action and the (different) one to approve it."""

    request: Permission
    approve: Permission


_P = Permission
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.ADMIN: frozenset(
            {
                _P.OPERATORS_MANAGE,
                _P.KEYS_ROTATE_REQUEST,
                _P.KEYS_ROTATE_APPROVE,
                _P.REPORTS_READ,
                _P.AUDIT_READ,
            }
        ),
        Role.SUPPORT: frozenset(
            {
                _P.ACCOUNT_UNFREEZE_REQUEST,
                _P.LIMITS_INCREASE_REQUEST,
                _P.LIMITS_TIERS_REQUEST,
                _P.RISK_REVERSE_REQUEST,
            }
        ),
        Role.RISK_ANALYST: frozenset(
            {
                _P.ACCOUNT_UNFREEZE_REQUEST,
                _P.ACCOUNT_UNFREEZE_APPROVE,
                _P.LIMITS_INCREASE_REQUEST,
                _P.LIMITS_TIERS_REQUEST,
                _P.CASES_REVIEW,
                _P.RISK_REVERSE_REQUEST,
                _P.RISK_REVERSE_APPROVE,
                _P.RISK_MODELS_MANAGE,
                _P.REPORTS_READ,
                _P.RISK_RULES_MANAGE,
                _P.RISK_RULES_APPROVE,
                _P.RISK_MODELS_APPROVE,
            }
        ),
        Role.COMPLIANCE_OFFICER: frozenset(
            {
                _P.ACCOUNT_UNFREEZE_REQUEST,
                _P.ACCOUNT_UNFREEZE_APPROVE,
                _P.LIMITS_INCREASE_REQUEST,
                _P.LIMITS_INCREASE_APPROVE,
                _P.LIMITS_TIERS_REQUEST,
                _P.LIMITS_TIERS_APPROVE,
                _P.CASES_REVIEW,
                _P.RISK_REVERSE_REQUEST,
                _P.RISK_REVERSE_APPROVE,
                _P.REPORTS_READ,
                _P.AUDIT_READ,
                _P.RISK_RULES_APPROVE,
                _P.RISK_MODELS_APPROVE,
            }
        ),
        Role.FINANCE: frozenset(
            {_P.LEDGER_ADJUST_REQUEST, _P.LEDGER_ADJUST_APPROVE, _P.REPORTS_READ}
        ),
    }
)
"""The matrix in the module docstring; a test pins one to the other."""

ACTION_PERMISSIONS: Final[Mapping[ActionType, ActionPermissions]] = MappingProxyType(
    {
        ActionType.LEDGER_ADJUSTMENT: ActionPermissions(
            request=_P.LEDGER_ADJUST_REQUEST, approve=_P.LEDGER_ADJUST_APPROVE
        ),
        ActionType.ACCOUNT_UNFREEZE: ActionPermissions(
            request=_P.ACCOUNT_UNFREEZE_REQUEST, approve=_P.ACCOUNT_UNFREEZE_APPROVE
        ),
        ActionType.LIMIT_INCREASE: ActionPermissions(
            request=_P.LIMITS_INCREASE_REQUEST, approve=_P.LIMITS_INCREASE_APPROVE
        ),
        ActionType.KEY_ROTATION: ActionPermissions(
            request=_P.KEYS_ROTATE_REQUEST, approve=_P.KEYS_ROTATE_APPROVE
        ),
        ActionType.RISK_RULE_CHANGE: ActionPermissions(
            request=_P.RISK_RULES_MANAGE, approve=_P.RISK_RULES_APPROVE
        ),
        ActionType.RISK_RESPONSE_REVERSAL: ActionPermissions(
            request=_P.RISK_REVERSE_REQUEST, approve=_P.RISK_REVERSE_APPROVE
        ),
        ActionType.RISK_MODEL_PROMOTION: ActionPermissions(
            request=_P.RISK_MODELS_MANAGE, approve=_P.RISK_MODELS_APPROVE
        ),
        ActionType.TIER_LIMITS_CHANGE: ActionPermissions(
            request=_P.LIMITS_TIERS_REQUEST, approve=_P.LIMITS_TIERS_APPROVE
        ),
    }
)


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    """Everything the roles together allow."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def approvable_actions(permissions: frozenset[Permission]) -> frozenset[ActionType]:
    """The action types whose requests these permissions may approve or refuse."""
    return frozenset(
        action for action, needed in ACTION_PERMISSIONS.items() if needed.approve in permissions
    )


def visible_actions(permissions: frozenset[Permission]) -> frozenset[ActionType]:
    """The action types whose requests these permissions may see: those it may ask for or
    decide. A support operator does not read finance's adjustments, for instance."""
    return frozenset(
        action
        for action, needed in ACTION_PERMISSIONS.items()
        if needed.request in permissions or needed.approve in permissions
    )

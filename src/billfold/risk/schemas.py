"""The risk API's request and response models (rules, dry runs, decisions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billfold.identity.operators.approvals import APPROVAL_ID_PREFIX
from billfold.identity.operators.types import OPERATOR_ID_PREFIX
from billfold.identity.schemas import datetime_from_ns
from billfold.kit.fields import JsonInt
from billfold.kit.ids import format_id
from billfold.kit.pagination import Page
from billfold.risk.changes import RULE_ID_PREFIX, RuleDraft
from billfold.risk.models import RiskDecision, RiskRule, RiskRuleVersion
from billfold.risk.rules import EXPRESSION_LENGTH_MAX
from billfold.risk.service import DECISION_ID_PREFIX
from billfold.risk.types import Action, FeatureValue, Response

__all__ = [
    "DecisionDetail",
    "DecisionPage",
    "DecisionSummary",
    "EvaluateRequest",
    "EvaluateResponse",
    "RuleCreateRequest",
    "RuleDetail",
    "RulePage",
    "RuleResponse",
    "RuleVersionRequest",
    "RuleVersionResponse",
]

FEATURES_GIVEN_MAX = 200
"""Features a dry run may be given."""
FEATURE_STRING_LENGTH_MAX = 200
RULE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Enforcement = Literal["shadow", "enforcing"]
ModeName = Literal["test", "live"]


class RuleVersionRequest(BaseModel):
    """A rule version's content: when it hits, what it asks for, and whether it enforces."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(min_length=1, max_length=EXPRESSION_LENGTH_MAX)
    """CEL over the features, as top-level variables: ``amount_major > 1000.0 && new_device``."""
    action: Action
    score: JsonInt = Field(ge=0, le=1000)
    reason: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    enforcement: Enforcement
    responses: list[Response] = Field(default_factory=list, max_length=len(Response))

    @field_validator("responses")
    @classmethod
    def _distinct(cls, value: list[Response]) -> list[Response]:
        if len(set(value)) != len(value):
            raise ValueError("each response at most once")
        return value

    def draft(self) -> RuleDraft:
        return RuleDraft(
            expression=self.expression,
            action=self.action,
            score=self.score,
            reason=self.reason,
            enforcement=self.enforcement,
            responses=tuple(self.responses),
        )


class RuleCreateRequest(RuleVersionRequest):
    """A new rule with its first version."""

    name: str = Field(pattern=RULE_NAME_PATTERN)
    mode: ModeName


class EvaluateRequest(BaseModel):
    """A dry run: an expression on the given features (absent ones are null)."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(min_length=1, max_length=EXPRESSION_LENGTH_MAX)
    features: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict, max_length=FEATURES_GIVEN_MAX
    )

    @field_validator("features")
    @classmethod
    def _bounded_strings(
        cls, value: dict[str, bool | int | float | str | None]
    ) -> dict[str, bool | int | float | str | None]:
        for name, item in value.items():
            if len(name) > 64 or (isinstance(item, str) and len(item) > FEATURE_STRING_LENGTH_MAX):
                raise ValueError("feature names up to 64 characters, strings up to 200")
        return value


class EvaluateResponse(BaseModel):
    matched: bool
    """Whether the rule would hit (False when it cannot be evaluated)."""
    error: str | None
    """Why it cannot be evaluated on these features (a type error, a null), if so."""


class RuleVersionResponse(BaseModel):
    version: int
    expression: str
    action: Action
    score: int
    reason: str
    responses: list[Response]
    enforcement: Enforcement
    state: Literal["pending_approval", "active", "superseded", "disabled", "rejected"]
    created_by: str
    created_at: datetime
    approval_id: str | None
    """The four-eyes request an enforcing version waits for (``apr_…``)."""
    activated_at: datetime | None
    activated_by: str | None

    @classmethod
    def from_model(cls, version: RiskRuleVersion) -> RuleVersionResponse:
        return cls(
            version=version.version,
            expression=version.expression,
            action=Action(version.action),
            score=version.score,
            reason=version.reason,
            responses=[Response(value) for value in json.loads(version.responses)],
            enforcement="shadow" if version.enforcement == "shadow" else "enforcing",
            state=version.state,
            created_by=format_id(OPERATOR_ID_PREFIX, version.created_by),
            created_at=datetime_from_ns(version.created_at),
            approval_id=None
            if version.approval_id is None
            else format_id(APPROVAL_ID_PREFIX, version.approval_id),
            activated_at=None
            if version.activated_at is None
            else datetime_from_ns(version.activated_at),
            activated_by=None
            if version.activated_by is None
            else format_id(OPERATOR_ID_PREFIX, version.activated_by),
        )


class RuleResponse(BaseModel):
    id: str
    mode: ModeName
    name: str
    current_version: int | None
    """The active version (None: the rule is disabled or its first version is pending)."""
    latest_version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    disable_approval_id: str | None
    """The approval request of the last asked-for disable of an active enforcing version
    (`apr_…`; its status says whether it waits, executed, was refused or expired)."""

    @classmethod
    def fields_of(cls, rule: RiskRule) -> dict[str, object]:
        return {
            "id": format_id(RULE_ID_PREFIX, rule.id),
            "mode": rule.mode,
            "name": rule.name,
            "current_version": rule.current_version,
            "latest_version": rule.latest_version,
            "created_by": format_id(OPERATOR_ID_PREFIX, rule.created_by),
            "created_at": datetime_from_ns(rule.created_at),
            "updated_at": datetime_from_ns(rule.updated_at),
            "disable_approval_id": None
            if rule.disable_approval_id is None
            else format_id(APPROVAL_ID_PREFIX, rule.disable_approval_id),
        }

    @classmethod
    def from_model(cls, rule: RiskRule) -> RuleResponse:
        return cls.model_validate(cls.fields_of(rule))


class RuleDetail(RuleResponse):
    """A rule with its newest versions (at most 100), newest first."""

    versions: list[RuleVersionResponse]

    @classmethod
    def of(cls, rule: RiskRule, versions: Sequence[RiskRuleVersion]) -> RuleDetail:
        return cls.model_validate(
            {
                **RuleResponse.fields_of(rule),
                "versions": [RuleVersionResponse.from_model(version) for version in versions],
            }
        )


class RulePage(BaseModel):
    """One page of rules, oldest first."""

    items: list[RuleResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[RiskRule]) -> RulePage:
        return cls(
            items=[RuleResponse.from_model(rule) for rule in page.items],
            next_cursor=page.next_cursor,
        )


class RuleHitResponse(BaseModel):
    rule_id: str
    version: int
    name: str
    action: Action
    score: int
    reason: str
    shadow: bool
    """A shadow rule's hit: stored and shown, never enforced."""
    responses: list[Response]


class DecisionSummary(BaseModel):
    id: str
    kind: str
    reference: str | None
    user_id: str | None
    amount: str = Field(
        pattern=r"^(0|[1-9][0-9]*)$",
        description="The movement's amount in minor units, a decimal string (it may pass"
        " 2^53, where JSON numbers read as doubles round).",
    )
    currency: str
    action: Action
    score: int
    model_score: float | None
    ruleset_version: int | None
    created_at: datetime

    @classmethod
    def fields_of(cls, row: RiskDecision) -> dict[str, object]:
        return {
            "id": format_id(DECISION_ID_PREFIX, row.id),
            "kind": row.kind,
            "reference": row.reference,
            "user_id": None if row.user_id is None else format_id("usr", row.user_id),
            "amount": str(row.amount),
            "currency": row.currency,
            "action": row.action,
            "score": row.score,
            "model_score": row.model_score,
            "ruleset_version": row.ruleset_version,
            "created_at": datetime_from_ns(row.created_at),
        }

    @classmethod
    def from_model(cls, row: RiskDecision) -> DecisionSummary:
        return cls.model_validate(cls.fields_of(row))


class DecisionDetail(DecisionSummary):
    """A decision explained: what the engine saw, which rules hit (shadow ones included),
    the model's score and why it decided so."""

    payee: str | None
    merchant_id: str | None
    device_id: str | None
    reasons: list[str]
    hits: list[RuleHitResponse]
    features: dict[str, FeatureValue]

    @classmethod
    def of(cls, row: RiskDecision) -> DecisionDetail:
        return cls.model_validate(
            {
                **DecisionSummary.fields_of(row),
                "payee": row.payee,
                "merchant_id": None
                if row.merchant_id is None
                else format_id("mer", row.merchant_id),
                "device_id": None if row.device_id is None else format_id("dev", row.device_id),
                "reasons": json.loads(row.reasons),
                "hits": json.loads(row.hits),
                "features": json.loads(row.features),
            }
        )


class DecisionPage(BaseModel):
    """One page of decisions, newest first."""

    items: list[DecisionSummary]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[RiskDecision]) -> DecisionPage:
        return cls(
            items=[DecisionSummary.from_model(row) for row in page.items],
            next_cursor=page.next_cursor,
        )

"""The review queue's and the automated responses' API models."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from billfold.identity.schemas import datetime_from_ns
from billfold.kit.fields import JsonInt
from billfold.kit.ids import format_id
from billfold.risk.cases.models import NOTE_LENGTH_MAX, RiskCaseNote, RiskCaseResolution
from billfold.risk.cases.responses import RESPONSE_ID_PREFIX, detail_of
from billfold.risk.cases.service import (
    CASE_ID_PREFIX,
    DECISION_ID_PREFIX,
    NOTE_ID_PREFIX,
    OPERATOR_ID_PREFIX,
    CaseDetail,
)
from billfold.risk.models import RiskCase, RiskDecision, RiskResponse
from billfold.wallets.limits import BPS_WHOLE

__all__ = [
    "CaseDecisionRequest",
    "CaseDetailResponse",
    "CaseLabelRequest",
    "CasePage",
    "CaseResponse",
    "CaseState",
    "NoteCreateRequest",
    "NoteResponse",
    "ResponseCreateRequest",
    "ResponseKind",
    "ResponsePage",
    "ReversalCreated",
    "ReversalRequest",
    "RiskResponseView",
]

CaseState = Literal["open", "resolving", "approved", "rejected", "expired"]
ResponseKind = Literal["freeze_account", "lower_limits", "hold_outgoing"]
ResponseState = Literal["active", "reversing", "reversed"]
_USER_PREFIX = "usr"
_REASON_LENGTH_MAX = 500


def _at(value: int | None) -> datetime | None:
    return None if value is None else datetime_from_ns(value)


def _operator(value: Any) -> str | None:
    return None if value is None else format_id(OPERATOR_ID_PREFIX, value)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoteCreateRequest(_Request):
    body: str = Field(min_length=1, max_length=NOTE_LENGTH_MAX)


class CaseDecisionRequest(_Request):
    note: str | None = Field(default=None, max_length=NOTE_LENGTH_MAX)
    """Optional: kept as a note on the case."""


class CaseLabelRequest(_Request):
    fraud: StrictBool


class NoteResponse(BaseModel):
    id: str
    author_id: str
    body: str
    created_at: datetime

    @classmethod
    def from_model(cls, note: RiskCaseNote) -> NoteResponse:
        return cls(
            id=format_id(NOTE_ID_PREFIX, note.id),
            author_id=format_id(OPERATOR_ID_PREFIX, note.author_id),
            body=note.body,
            created_at=datetime_from_ns(note.created_at),
        )


class CaseResponse(BaseModel):
    """A held movement in the review queue."""

    id: str
    mode: Literal["test", "live"]
    state: CaseState = Field(
        description="resolving: decided, the held money not moved yet (retried)."
    )
    kind: str
    reference: str
    """The held movement's id (`pay_…`, `ref_…`, `cnv_…`)."""
    user_id: str | None
    amount: str
    """Minor units."""
    currency: str
    decision_id: str
    opened_at: datetime
    hold_expires_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    @classmethod
    def fields_of(cls, case: RiskCase, state: str) -> dict[str, Any]:
        return {
            "id": format_id(CASE_ID_PREFIX, case.id),
            "mode": case.mode,
            "state": state,
            "kind": case.kind,
            "reference": case.reference,
            "user_id": None if case.user_id is None else format_id(_USER_PREFIX, case.user_id),
            "amount": str(case.amount),
            "currency": case.currency,
            "decision_id": format_id(DECISION_ID_PREFIX, case.decision_id),
            "opened_at": datetime_from_ns(case.opened_at),
            "hold_expires_at": datetime_from_ns(case.hold_expires_at),
            "resolved_at": _at(case.resolved_at),
            "resolved_by": _operator(case.resolved_by),
        }

    @classmethod
    def from_model(cls, case: RiskCase, state: str) -> CaseResponse:
        return cls(**cls.fields_of(case, state))


class CasePage(BaseModel):
    items: list[CaseResponse]
    next_cursor: str | None


class DecisionView(BaseModel):
    """What the engine saw and why it held the movement."""

    id: str
    action: str
    score: int
    reasons: list[str]
    features: dict[str, Any]
    hits: list[Any]
    model_score: float | None
    ruleset_version: int | None
    created_at: datetime

    @classmethod
    def from_model(cls, decision: RiskDecision) -> DecisionView:
        return cls(
            id=format_id(DECISION_ID_PREFIX, decision.id),
            action=decision.action,
            score=decision.score,
            reasons=json.loads(decision.reasons),
            features=json.loads(decision.features),
            hits=json.loads(decision.hits),
            model_score=decision.model_score,
            ruleset_version=decision.ruleset_version,
            created_at=datetime_from_ns(decision.created_at),
        )


class ResolutionView(BaseModel):
    """The money side of a decided case."""

    action: Literal["post", "void"]
    state: Literal["pending", "settled"]
    attempts: int
    last_error: str | None
    requested_at: datetime
    settled_at: datetime | None

    @classmethod
    def from_model(cls, resolution: RiskCaseResolution) -> ResolutionView:
        return cls(
            action="post" if resolution.approve else "void",
            state="settled" if resolution.state == "settled" else "pending",
            attempts=resolution.attempts,
            last_error=resolution.last_error,
            requested_at=datetime_from_ns(resolution.requested_at),
            settled_at=_at(resolution.settled_at),
        )


class CaseDetailResponse(CaseResponse):
    decision: DecisionView | None
    resolution: ResolutionView | None
    notes: list[NoteResponse]
    """Oldest first."""

    @classmethod
    def from_detail(cls, detail: CaseDetail) -> CaseDetailResponse:
        return cls(
            **cls.fields_of(detail.case, detail.state),
            decision=None if detail.decision is None else DecisionView.from_model(detail.decision),
            resolution=None
            if detail.resolution is None
            else ResolutionView.from_model(detail.resolution),
            notes=[NoteResponse.from_model(note) for note in detail.notes],
        )


_LIMIT_BPS_ONLY_FOR_LOWER_LIMITS: dict[str, Any] = {
    "anyOf": [
        {"properties": {"kind": {"const": "lower_limits"}}},
        {"properties": {"limit_bps": {"type": "null"}}},
    ]
}
"""The document's form of `_limit_bps_only_for_lower_limits`: a body it allowed would be
refused with 422 otherwise."""


class ResponseCreateRequest(_Request):
    model_config = ConfigDict(json_schema_extra=_LIMIT_BPS_ONLY_FOR_LOWER_LIMITS)

    user_id: str = Field(pattern=r"^usr_[0-9a-f]{32}$")
    kind: ResponseKind
    reason: str = Field(min_length=1, max_length=_REASON_LENGTH_MAX)
    limit_bps: JsonInt | None = Field(default=None, ge=0, le=BPS_WHOLE)
    """For lower_limits: the share of each limit kept, in basis points (default: the
    setting `BILLFOLD_RISK_LOWER_LIMITS_BPS`)."""

    @model_validator(mode="after")
    def _limit_bps_only_for_lower_limits(self) -> ResponseCreateRequest:
        """Another kind would ignore it: the caller meant something this does not do."""
        if self.limit_bps is not None and self.kind != "lower_limits":
            raise ValueError("limit_bps is only for the kind lower_limits")
        return self


class ReversalRequest(_Request):
    reason: str = Field(min_length=1, max_length=_REASON_LENGTH_MAX)


class RiskResponseView(BaseModel):
    """An automated response applied to an end user."""

    id: str
    mode: Literal["test", "live"]
    user_id: str
    kind: ResponseKind
    state: ResponseState = Field(description="reversing: a reversal awaits a second operator.")
    decision_id: str | None
    """The decision that asked for it; None when an operator applied it."""
    detail: dict[str, Any]
    """Exactly what it changed (accounts frozen, the limit reduction), to undo it."""
    applied_at: datetime
    reversed_at: datetime | None
    reversed_by: str | None

    @classmethod
    def from_model(cls, response: RiskResponse) -> RiskResponseView:
        return cls(
            id=format_id(RESPONSE_ID_PREFIX, response.id),
            mode=response.mode,
            user_id=format_id(_USER_PREFIX, response.user_id),
            kind=response.kind,
            state=response.state,
            decision_id=None
            if response.decision_id is None
            else format_id(DECISION_ID_PREFIX, response.decision_id),
            detail=detail_of(response),
            applied_at=datetime_from_ns(response.applied_at),
            reversed_at=_at(response.reversed_at),
            reversed_by=_operator(response.reversed_by),
        )


class ResponsePage(BaseModel):
    items: list[RiskResponseView]
    next_cursor: str | None


class ReversalCreated(BaseModel):
    response: RiskResponseView
    approval_id: str
    """`apr_…`: the four-eyes request a different operator must approve."""
    approval_status: str

"""The API's request and response models for operators, their sessions and approvals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billfold.identity.operators.approvals import (
    APPROVAL_ID_PREFIX,
    EXPIRY_MAX_S,
    EXPIRY_MIN_S,
    payload_of,
)
from billfold.identity.operators.models import (
    DISPLAY_NAME_LENGTH_MAX,
    EMAIL_LENGTH_MAX,
    NOTE_LENGTH_MAX,
    ApprovalRequest,
    Operator,
)
from billfold.identity.operators.passwords import PASSWORD_LENGTH_MAX
from billfold.identity.operators.payloads import (
    AccountUnfreezePayload,
    KeyRotationPayload,
    LedgerAdjustmentPayload,
    LimitIncreasePayload,
    RiskResponseReversalPayload,
    TierLimitsChangePayload,
)
from billfold.identity.operators.permissions import ActionType, Permission, Role, permissions_of
from billfold.identity.operators.service import OperatorLogin, roles_of
from billfold.identity.operators.types import OPERATOR_ID_PREFIX
from billfold.identity.schemas import TENANT_ID_PREFIX, datetime_from_ns
from billfold.kit.ids import format_id
from billfold.kit.pagination import Page

__all__ = [
    "AccountUnfreezeRequest",
    "ApprovalCreateRequest",
    "ApprovalDecisionRequest",
    "ApprovalPage",
    "ApprovalRefusalRequest",
    "ApprovalResponse",
    "KeyRotationRequest",
    "LedgerAdjustmentRequest",
    "LimitIncreaseRequest",
    "LoginRequest",
    "OperatorCreateRequest",
    "OperatorCreated",
    "OperatorPage",
    "OperatorResponse",
    "OperatorSessionCreated",
    "OperatorStatusRequest",
    "PasswordChangeRequest",
    "RiskResponseReversalRequest",
    "RolesUpdateRequest",
    "TierLimitsChangeRequest",
]

_ID_EXAMPLE = "0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"
_Roles = Annotated[list[Role], Field(min_length=1, max_length=len(Role))]
_Password = Annotated[str, Field(min_length=1, max_length=PASSWORD_LENGTH_MAX)]
_Note = Annotated[str, Field(min_length=1, max_length=NOTE_LENGTH_MAX)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Request):
    """Sign in as an operator of a tenant (an email is unique within one tenant only)."""

    tenant_id: str = Field(max_length=40, examples=[f"{TENANT_ID_PREFIX}_{_ID_EXAMPLE}"])
    email: str = Field(min_length=3, max_length=EMAIL_LENGTH_MAX)
    password: _Password


class OperatorCreateRequest(_Request):
    """A new operator; the response carries a one-time password to hand over."""

    email: str = Field(min_length=3, max_length=EMAIL_LENGTH_MAX)
    display_name: str = Field(min_length=1, max_length=DISPLAY_NAME_LENGTH_MAX)
    roles: _Roles


class RolesUpdateRequest(_Request):
    """The operator's complete new set of roles."""

    roles: _Roles


class OperatorStatusRequest(_Request):
    """The optional body of disabling or enabling an operator."""

    reason: _Note | None = Field(
        default=None,
        description="Why (a departure, a suspected compromise, …): recorded with the"
        " `operator.disabled` or `operator.enabled` security event.",
    )


class PasswordChangeRequest(_Request):
    current_password: _Password
    new_password: _Password


class OperatorResponse(BaseModel):
    """An operator as listed: never its password or hash."""

    id: str = Field(examples=[f"{OPERATOR_ID_PREFIX}_{_ID_EXAMPLE}"])
    tenant_id: str
    email: str
    display_name: str
    roles: list[Role]
    permissions: list[Permission] = Field(description="What the roles together allow.")
    status: Literal["active", "disabled"]
    password_change_required: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, operator: Operator) -> OperatorResponse:
        return cls(**_operator_fields(operator))


def _operator_fields(operator: Operator) -> dict[str, Any]:
    roles = roles_of(operator)
    return {
        "id": format_id(OPERATOR_ID_PREFIX, operator.id),
        "tenant_id": format_id(TENANT_ID_PREFIX, operator.tenant_id),
        "email": operator.email,
        "display_name": operator.display_name,
        "roles": sorted(roles),
        "permissions": sorted(permissions_of(roles)),
        "status": operator.status,
        "password_change_required": operator.password_change_required,
        "created_at": datetime_from_ns(operator.created_at),
        "updated_at": datetime_from_ns(operator.updated_at),
    }


class OperatorCreated(OperatorResponse):
    """A new operator, with the only copy of its one-time password."""

    one_time_password: str = Field(
        description="Shown once: hand it over; it must be changed at first sign-in."
    )

    @classmethod
    def from_created(cls, operator: Operator, *, one_time_password: str) -> OperatorCreated:
        return cls(**_operator_fields(operator), one_time_password=one_time_password)


class OperatorPage(BaseModel):
    """One page of operators; pass `next_cursor` back as `cursor` for the next one."""

    items: list[OperatorResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[Operator]) -> OperatorPage:
        return cls(
            items=[OperatorResponse.from_model(item) for item in page.items],
            next_cursor=page.next_cursor,
        )


class OperatorSessionCreated(BaseModel):
    """A signed-in session: send `token` as `Authorization: Bearer <token>`."""

    token: str = Field(description="Shown once; stored only as a hash. Starts with `bfo_`.")
    expires_at: datetime
    operator: OperatorResponse

    @classmethod
    def from_login(cls, login: OperatorLogin) -> OperatorSessionCreated:
        return cls(
            token=login.token,
            expires_at=datetime_from_ns(login.session.expires_at),
            operator=OperatorResponse.from_model(login.operator),
        )


class _ApprovalCreate(_Request):
    reason: _Note = Field(description="Why: shown to whoever decides.")
    # Strict: a JSON integer only, as every integer field of the API (`"3600"` or `true`
    # is 422). Not kit's JsonInt: on an optional field pydantic then documents the bounds
    # as `ge`/`le`, which JSON Schema does not know, instead of `minimum`/`maximum`.
    expires_in_s: int | None = Field(
        default=None,
        ge=EXPIRY_MIN_S,
        le=EXPIRY_MAX_S,
        strict=True,
        description="How long the request may wait for a decision (default one day).",
    )


class LedgerAdjustmentRequest(_ApprovalCreate):
    action_type: Literal[ActionType.LEDGER_ADJUSTMENT]
    payload: LedgerAdjustmentPayload


class AccountUnfreezeRequest(_ApprovalCreate):
    action_type: Literal[ActionType.ACCOUNT_UNFREEZE]
    payload: AccountUnfreezePayload


class LimitIncreaseRequest(_ApprovalCreate):
    action_type: Literal[ActionType.LIMIT_INCREASE]
    payload: LimitIncreasePayload


class KeyRotationRequest(_ApprovalCreate):
    action_type: Literal[ActionType.KEY_ROTATION]
    payload: KeyRotationPayload


class RiskResponseReversalRequest(_ApprovalCreate):
    action_type: Literal[ActionType.RISK_RESPONSE_REVERSAL]
    payload: RiskResponseReversalPayload


class TierLimitsChangeRequest(_ApprovalCreate):
    action_type: Literal[ActionType.TIER_LIMITS_CHANGE]
    payload: TierLimitsChangePayload


ApprovalCreateRequest = Annotated[
    LedgerAdjustmentRequest
    | AccountUnfreezeRequest
    | LimitIncreaseRequest
    | KeyRotationRequest
    | RiskResponseReversalRequest
    | TierLimitsChangeRequest,
    Field(discriminator="action_type"),
]
"""A request for one sensitive action; its payload's shape depends on `action_type`."""


class ApprovalDecisionRequest(_Request):
    note: _Note | None = Field(default=None, description="Optional words for the record.")


class ApprovalRefusalRequest(_Request):
    note: _Note = Field(description="Why it is refused: required.")


class ApprovalResponse(BaseModel):
    """An approval request and, once decided, who decided it and what happened."""

    id: str = Field(examples=[f"{APPROVAL_ID_PREFIX}_{_ID_EXAMPLE}"])
    tenant_id: str
    action_type: ActionType
    payload: dict[str, Any]
    reason: str
    status: Literal["pending", "approved", "refused", "expired", "executed", "failed"] = Field(
        description="approved means approved and executing; executed or failed says how it ended."
    )
    requested_by: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    executed_at: datetime | None
    result: dict[str, Any] | None = Field(
        description="What execution produced: a transfer id, or a failure code."
    )

    @classmethod
    def from_model(cls, approval: ApprovalRequest) -> ApprovalResponse:
        decided_by = approval.decided_by
        return cls(
            id=format_id(APPROVAL_ID_PREFIX, approval.id),
            tenant_id=format_id(TENANT_ID_PREFIX, approval.tenant_id),
            action_type=ActionType(approval.action_type),
            payload=payload_of(approval),
            reason=approval.reason,
            status=approval.status,
            requested_by=format_id(OPERATOR_ID_PREFIX, approval.requested_by),
            created_at=datetime_from_ns(approval.created_at),
            expires_at=datetime_from_ns(approval.expires_at),
            decided_by=None if decided_by is None else format_id(OPERATOR_ID_PREFIX, decided_by),
            decided_at=_optional_datetime(approval.decided_at),
            decision_note=approval.decision_note,
            executed_at=_optional_datetime(approval.executed_at),
            result=None if approval.result is None else json.loads(approval.result),
        )


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else datetime_from_ns(value)


class ApprovalPage(BaseModel):
    """One page of approval requests, newest first."""

    items: list[ApprovalResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[ApprovalRequest]) -> ApprovalPage:
        return cls(
            items=[ApprovalResponse.from_model(item) for item in page.items],
            next_cursor=page.next_cursor,
        )

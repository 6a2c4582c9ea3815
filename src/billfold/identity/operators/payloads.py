"""What each kind of approval request carries, validated before anyone is asked to decide.

A payload is checked by its action type's model (unknown fields refused) and stored as
canonical JSON (sorted keys, amounts as digit strings), so what the approver saw is exactly
what executes.

=================  ===========================================================
action type        payload
=================  ===========================================================
ledger_adjustment  ``mode``, ``debit_account_id``, ``credit_account_id`` (``acc_…``),
                   ``amount`` (minor units), ``asset``, ``code`` (default 9000)
account_unfreeze   ``mode``, ``account_id`` (``acc_…``)
limit_increase     ``subject_id`` (a public id), ``limit`` (its name), ``asset``,
                   ``amount`` (the new limit, minor units)
key_rotation       ``key_id`` (the key's name in the key hierarchy)
risk_rule_change   ``rule_id`` (``rrl_…``), ``version``, ``operation``: ``activate``
                   (the pending version made active) or ``disable`` (the active
                   enforcing version); made by the risk rules API, not asked for
                   directly
risk_response_     ``response_id`` (``rrs_…``: the automated risk response to
reversal           undo)
risk_model_        ``model_id`` (``rmv_…``: the model version to make active);
promotion          made by the risk models API, not asked for directly
tier_limits_       ``mode``, ``tier``, ``asset``, ``limits``: ``per_transaction``,
change             ``daily``, ``monthly`` (the tenant's figures, minor units), or
                   null to remove them (the default table applies again)
=================  ===========================================================
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from billfold.identity.operators.errors import InvalidApprovalPayload
from billfold.identity.operators.models import PAYLOAD_LENGTH_MAX
from billfold.identity.operators.permissions import ActionType
from billfold.identity.types import Mode
from billfold.kit.errors import ERRORS_LISTED_MAX, invariant
from billfold.kit.fields import JsonInt, decimal_pattern
from billfold.kit.ids import InvalidId, parse_id

__all__ = [
    "ACCOUNT_ID_PREFIX",
    "ADJUSTMENT_CODE_DEFAULT",
    "AMOUNT_MAX",
    "PAYLOAD_MODELS",
    "RISK_RESPONSE_ID_PREFIX",
    "AccountUnfreezePayload",
    "KeyRotationPayload",
    "LedgerAdjustmentPayload",
    "LimitIncreasePayload",
    "RiskModelPromotionPayload",
    "RiskResponseReversalPayload",
    "RiskRuleChangePayload",
    "TierLimitFigures",
    "TierLimitsChangePayload",
    "canonical_payload",
    "load_payload",
]

ACCOUNT_ID_PREFIX = "acc"
"""The ledger API's account id prefix (``billfold.ledger.schemas``), repeated here because
identity does not import the ledger."""
RISK_RESPONSE_ID_PREFIX = "rrs"
"""The risk responses' API id prefix (``billfold.risk.cases``), repeated here because
identity does not import risk."""
AMOUNT_MAX: Final = 2**127 - 1
ADJUSTMENT_CODE_DEFAULT = 9000
"""The ledger code a manual adjustment is recorded with unless the request names one."""
_CODE_MAX = 65_535
_AMOUNT_PATTERN = decimal_pattern(AMOUNT_MAX, minimum=1)
_PUBLIC_ID = r"^[a-z]{2,8}_[0-9a-f]{32}$"
_ASSET = r"^[A-Z0-9]{2,12}$"


def _amount(value: object) -> str:
    """A positive amount from JSON (an integer or a digit string), as a digit string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("an amount is a positive integer: a JSON integer or a digit string")
    text = str(value)
    if not re.fullmatch(_AMOUNT_PATTERN, text, re.ASCII):
        raise ValueError("an amount is from 1 to 2^127-1, in the digits 0-9 without leading zeros")
    return text


def _account_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"an account id is a string {ACCOUNT_ID_PREFIX}_<32 hex digits>")
    try:
        parse_id(ACCOUNT_ID_PREFIX, value)
    except InvalidId as error:  # pydantic reports ValueErrors as field errors
        raise ValueError(f"an account id is {ACCOUNT_ID_PREFIX}_<32 hex digits>") from error
    return value


# What the validators take, for the OpenAPI document (a plain string said nothing of the
# form, and refused the integer amounts the API takes).
Amount = Annotated[
    str,
    BeforeValidator(_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{_AMOUNT_PATTERN}$"},
                {"type": "integer", "minimum": 1, "maximum": AMOUNT_MAX},
            ],
            "description": "Minor units, 1 to 2^127-1: a digit string or an integer.",
        }
    ),
]
AccountId = Annotated[
    str,
    BeforeValidator(_account_id),
    WithJsonSchema({"type": "string", "pattern": f"^{ACCOUNT_ID_PREFIX}_[0-9a-f]{{32}}$"}),
]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerAdjustmentPayload(_Payload):
    """A manual, balanced transfer between two accounts of the tenant's ledger (one mode)."""

    mode: Mode
    debit_account_id: AccountId
    credit_account_id: AccountId
    amount: Amount
    asset: str = Field(pattern=_ASSET)
    code: JsonInt = Field(default=ADJUSTMENT_CODE_DEFAULT, ge=1, le=_CODE_MAX)

    @model_validator(mode="after")
    def _accounts_differ(self) -> LedgerAdjustmentPayload:
        if self.debit_account_id == self.credit_account_id:
            raise ValueError("the debit and credit accounts must differ")
        return self

    def account_ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        """The debit and credit accounts' internal ids."""
        return (
            parse_id(ACCOUNT_ID_PREFIX, self.debit_account_id),
            parse_id(ACCOUNT_ID_PREFIX, self.credit_account_id),
        )


class AccountUnfreezePayload(_Payload):
    """Set a frozen ledger account of the tenant (one mode) back to active."""

    mode: Mode
    account_id: AccountId

    def internal_account_id(self) -> uuid.UUID:
        return parse_id(ACCOUNT_ID_PREFIX, self.account_id)


class LimitIncreasePayload(_Payload):
    """Raise a named limit for a subject (an end user, a merchant, an account)."""

    subject_id: str = Field(pattern=_PUBLIC_ID)
    limit: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    asset: str = Field(pattern=_ASSET)
    amount: Amount


class KeyRotationPayload(_Payload):
    """Rotate a key of the key hierarchy, by its name."""

    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class RiskRuleChangePayload(_Payload):
    """A change to a risk rule's enforcement (``billfold.risk``): ``activate`` makes a
    pending version active (a new enforcing version, or any version replacing an active
    enforcing one); ``disable`` stops evaluating the rule whose active enforcing version is
    ``version``."""

    rule_id: str = Field(pattern=r"^rrl_[0-9a-f]{32}$")
    version: int = Field(ge=1, le=1_000_000)
    operation: Literal["activate", "disable"] = "activate"


class RiskResponseReversalPayload(_Payload):
    """Undo an automated risk response of the tenant, exactly as its record says."""

    response_id: str = Field(pattern=rf"^{RISK_RESPONSE_ID_PREFIX}_[0-9a-f]{{32}}$")

    def internal_response_id(self) -> uuid.UUID:
        return parse_id(RISK_RESPONSE_ID_PREFIX, self.response_id)


class RiskModelPromotionPayload(_Payload):
    """Make a risk model version the active one of its kind (``billfold.risk.scoring``)."""

    model_id: str = Field(pattern=r"^rmv_[0-9a-f]{32}$")


class TierLimitFigures(_Payload):
    """A KYC tier's three limits in one currency, minor units (their range and order are
    the wallets domain's to check, when the request is made and again when approved)."""

    per_transaction: Amount
    daily: Amount
    monthly: Amount


class TierLimitsChangePayload(_Payload):
    """Set the tenant's own spending limits for one KYC tier in one currency and mode (in
    place of the default table's, for every holder of that tier), or remove them
    (``limits`` null). ``limits`` is required either way, so a removal is always said, never
    implied by a missing field. ``tier`` is any integer here: the wallets domain knows the
    tiers there are, and refuses another with its own code (``unknown_tier``)."""

    mode: Mode
    tier: JsonInt
    asset: str = Field(pattern=_ASSET)
    limits: TierLimitFigures | None


PAYLOAD_MODELS: Final[Mapping[ActionType, type[_Payload]]] = {
    ActionType.LEDGER_ADJUSTMENT: LedgerAdjustmentPayload,
    ActionType.ACCOUNT_UNFREEZE: AccountUnfreezePayload,
    ActionType.LIMIT_INCREASE: LimitIncreasePayload,
    ActionType.KEY_ROTATION: KeyRotationPayload,
    ActionType.RISK_RULE_CHANGE: RiskRuleChangePayload,
    ActionType.RISK_RESPONSE_REVERSAL: RiskResponseReversalPayload,
    ActionType.RISK_MODEL_PROMOTION: RiskModelPromotionPayload,
    ActionType.TIER_LIMITS_CHANGE: TierLimitsChangePayload,
}
invariant(set(PAYLOAD_MODELS) == set(ActionType), "every action type has a payload model")


def canonical_payload(action_type: ActionType, payload: Mapping[str, Any]) -> str:
    """The payload validated for ``action_type``, as the canonical JSON that is stored."""
    try:
        model = PAYLOAD_MODELS[action_type].model_validate(dict(payload))
    except ValidationError as error:
        errors = [
            {"loc": [str(part) for part in entry["loc"]], "message": entry["msg"]}
            for entry in error.errors()[:ERRORS_LISTED_MAX]
        ]
        raise InvalidApprovalPayload(
            f"The payload does not fit a {action_type.value} request.", errors=errors
        ) from None
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > PAYLOAD_LENGTH_MAX:
        raise InvalidApprovalPayload(f"A payload takes at most {PAYLOAD_LENGTH_MAX} bytes.")
    return text


def load_payload(action_type: ActionType, text: str) -> _Payload:
    """The stored payload as its model (it was validated when stored)."""
    return PAYLOAD_MODELS[action_type].model_validate_json(text)

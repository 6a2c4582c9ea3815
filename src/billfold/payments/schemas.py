"""Payments' API models. Amounts are integers in minor units (a JSON integer or a digit
string) from 1 to 2^62, and decimal strings in responses."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from billfold.kit.fields import JsonInt, decimal_pattern
from billfold.ledger.schemas import StorableText

__all__ = [
    "AMOUNT_MAX",
    "ApproveMoneyRequest",
    "AuthorizeRequest",
    "CaptureRequest",
    "DisputeOpenRequest",
    "DisputeResolveRequest",
    "DisputeResponse",
    "EvidenceRequest",
    "FeeResponse",
    "FxLegResponse",
    "MerchantPaymentCreate",
    "MoneyRequestCreate",
    "MoneyRequestResponse",
    "NotificationReceipt",
    "P2PCreate",
    "PaymentResponse",
    "RefundCreate",
    "RefundResponse",
    "SplitRuleCreate",
    "SplitRuleResponse",
    "StateChangeResponse",
    "TopUpCreate",
    "TransferSummary",
    "WithdrawalCreate",
]

AMOUNT_MAX = 2**62
"""Payments fit a BIGINT column with room for sums."""
_DIGITS_PATTERN = decimal_pattern(AMOUNT_MAX, minimum=1)
_DIGITS = re.compile(_DIGITS_PATTERN, re.ASCII)
CURRENCY = r"^[A-Z0-9]{2,12}$"
METADATA_KEYS_MAX = 20
METADATA_KEY_LENGTH_MAX = 40
"""A key is a short name: bounded like the values, so metadata stays a few kilobytes."""


def _amount(value: object) -> int:
    """A JSON integer or a string of ASCII digits, nothing else: a float (even 10.0, or
    one past 2^53 that JSON parsing already rounded), "10.0", " 10" or "1_000" is refused
    rather than read as some other number of minor units. The string is the documented
    pattern's: no leading zeros, 1 to `AMOUNT_MAX`."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("an amount is minor units: a JSON integer or a string of digits")


Amount = Annotated[
    int,
    BeforeValidator(_amount),
    Field(ge=1, le=AMOUNT_MAX),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{_DIGITS_PATTERN}$"},
                {"type": "integer", "minimum": 1, "maximum": AMOUNT_MAX},
            ],
            "description": "Minor units, 1 to 2^62: a JSON integer or a string of digits.",
        }
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopUpCreate(_Request):
    amount: Amount
    currency: str = Field(pattern=CURRENCY)
    method: Literal["card", "bank_transfer"]
    instrument: str = Field(
        min_length=8,
        max_length=34,
        pattern=r"^[A-Z0-9]+$",
        description="A card number (sandbox test cards in the README) or an IBAN.",
    )
    step_up_token: str | None = Field(
        default=None,
        max_length=200,
        description="A step-up token bound to this movement's amount, currency and payee,"
        " after a `step_up_required` answer (threshold or risk challenge).",
    )


class WithdrawalCreate(_Request):
    amount: Amount
    currency: str = Field(pattern=CURRENCY)
    method: Literal["card", "bank_transfer"]
    destination: str = Field(min_length=8, max_length=34, pattern=r"^[A-Z0-9]+$")
    step_up_token: str | None = Field(default=None, max_length=200)


QUOTE_ID = r"^fxq_[0-9a-f]{32}$"


class P2PCreate(_Request):
    recipient: str = Field(
        min_length=3, max_length=40, description="`usr_…`, a phone number (+…) or a handle"
    )
    amount: Amount = Field(description="What the recipient receives, in `currency`.")
    currency: str = Field(pattern=CURRENCY)
    step_up_token: str | None = Field(default=None, max_length=200)
    source_currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Pay from this currency's wallet, converted through FX when it differs"
        " from `currency` (defaults to the quote's sell currency, else `currency`).",
    )
    quote_id: str | None = Field(
        default=None,
        pattern=QUOTE_ID,
        description="An unused FX quote selling `source_currency` for exactly the amount"
        " plus the P2P fees in `currency`; without one a quote is made at the tenant's"
        " spread.",
    )


class AuthorizeRequest(_Request):
    source_currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Pay from this currency's wallet, converted through FX when it differs"
        " from the payment's currency (defaults to the quote's sell currency).",
    )
    quote_id: str | None = Field(
        default=None,
        pattern=QUOTE_ID,
        description="An unused FX quote selling `source_currency` for exactly the payment's"
        " amount; without one a quote is made at the tenant's spread.",
    )
    step_up_token: str | None = Field(
        default=None,
        max_length=200,
        description="A step-up token bound to this movement's amount, currency and payee,"
        " after a `step_up_required` answer (threshold or risk challenge).",
    )


class ApproveMoneyRequest(_Request):
    source_currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Pay from this currency's wallet, converted through FX when it differs"
        " from the request's currency (defaults to the quote's sell currency).",
    )
    quote_id: str | None = Field(
        default=None,
        pattern=QUOTE_ID,
        description="An unused FX quote selling `source_currency` for exactly the requested"
        " amount plus the P2P fees; without one a quote is made at the tenant's spread.",
    )
    step_up_token: str | None = Field(
        default=None,
        max_length=200,
        description="A step-up token bound to this movement's amount, currency and payee,"
        " after a `step_up_required` answer (threshold or risk challenge).",
    )


class MerchantPaymentCreate(_Request):
    merchant_id: str = Field(pattern=r"^mer_[0-9a-f]{32}$")
    amount: Amount
    currency: str = Field(pattern=CURRENCY)
    reference: StorableText | None = Field(default=None, max_length=128)
    metadata: (
        dict[
            Annotated[str, Field(max_length=METADATA_KEY_LENGTH_MAX)],
            Annotated[str, Field(max_length=500)],
        ]
        | None
    ) = Field(default=None, max_length=METADATA_KEYS_MAX)
    expires_in_s: JsonInt | None = Field(default=None, ge=1, le=30 * 86_400)
    capture: Literal["automatic", "manual"] = "manual"
    split_rule_id: str | None = Field(default=None, pattern=r"^spl_[0-9a-f]{32}$")


class CaptureRequest(_Request):
    amount: Amount | None = None


class RefundCreate(_Request):
    amount: Amount | None = None
    reason: StorableText | None = Field(default=None, max_length=200)


class DisputeOpenRequest(_Request):
    amount: Amount
    reason: StorableText | None = Field(default=None, max_length=200)


class EvidenceRequest(_Request):
    kind: Literal["receipt", "delivery", "correspondence", "other"]
    description: str = Field(min_length=1, max_length=1000)


class DisputeResolveRequest(_Request):
    outcome: Literal["won", "lost"]


class MoneyRequestCreate(_Request):
    payer: str = Field(min_length=3, max_length=40)
    amount: Amount
    currency: str = Field(pattern=CURRENCY)
    note: StorableText | None = Field(default=None, max_length=200)
    expires_in_s: JsonInt = Field(default=7 * 86_400, ge=1, le=30 * 86_400)


class SplitShare(_Request):
    merchant_id: str = Field(pattern=r"^mer_[0-9a-f]{32}$")
    bps: JsonInt = Field(ge=1, le=10_000)


class SplitRuleCreate(_Request):
    name: StorableText = Field(min_length=1, max_length=100)
    shares: list[SplitShare] = Field(min_length=1, max_length=10)
    levels: JsonInt = Field(default=1, ge=1, le=3)


class SplitRuleResponse(BaseModel):
    id: str
    name: str
    levels: int


class StateChangeResponse(BaseModel):
    from_state: str | None
    to_state: str
    reason: str | None
    at: str


class FeeResponse(BaseModel):
    rule: str
    description: str
    amount: str
    currency: str
    transfer_id: str


class TransferSummary(BaseModel):
    id: str
    step: str
    debit_account_id: str
    credit_account_id: str
    amount: str
    currency: str
    code: int
    flags: int
    pending_id: str | None
    timestamp: str


RefundState = Literal["pending", "in_review", "succeeded", "failed"]
PaymentState = Literal[
    "created",
    "requires_action",
    "processing",
    "succeeded",
    "failed",
    "requires_payment",
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "voided",
    "expired",
    "in_review",
]
"""Every `payments.states.State` (a test pins them equal)."""


class RefundResponse(BaseModel):
    id: str
    payment_id: str
    amount: str
    state: RefundState
    reason: str | None
    failure_code: str | None
    fee_returned: str = Field(
        description="Capture fees returned to the merchant with this refund (pro rata, the"
        " proportional part only)."
    )
    risk_decision_id: str | None = Field(
        default=None, description="The risk decision (`rdc_…`) that admitted or held it."
    )


class FxLegResponse(BaseModel):
    """How a cross-currency payment was converted: the payer paid `source_amount` of
    `source_currency` at the quote's locked `rate` (buy per sell, after `spread_bps`)."""

    quote_id: str
    source_currency: str
    source_amount: str
    currency: str
    amount: str
    rate: str
    mid_rate: str
    spread_bps: int
    rates_date: str
    sell_transfer_id: str
    buy_transfer_id: str


class DisputeResponse(BaseModel):
    id: str
    payment_id: str
    amount: str
    held_amount: str
    state: Literal["opening", "open", "winning", "losing", "won", "lost"] = Field(
        description="`opening`: its hold is being placed; `winning`/`losing`: that outcome"
        " is claimed and its ledger steps are under way (a resolution that failed there is"
        " completed by a retry of the same outcome, or by recovery; the other outcome is"
        " refused)."
    )
    opened_by: str
    reason: str | None
    evidence: list[dict[str, object]]


class PaymentResponse(BaseModel):
    id: str
    kind: str
    state: PaymentState = Field(
        description="`in_review`: held by a risk decision until an analyst approves or"
        " rejects it (or the hold expires)."
    )
    amount: str
    currency: str
    captured_amount: str
    refunded_amount: str
    merchant_id: str | None
    payer: str | None
    payee: str | None
    provider: str | None
    method: str | None
    instrument_last4: str | None
    provider_reference: str | None
    reference: str | None
    metadata: dict[str, str] | None
    capture: str
    failure_code: str | None = Field(
        description="Why it failed; `risk_blocked`, `risk_rejected` or"
        " `risk_review_expired` for risk outcomes."
    )
    risk_decision_id: str | None = Field(
        default=None,
        description="The risk decision (`rdc_…`) that admitted, held or blocked it; null"
        " when no risk engine is configured.",
    )
    next_action_url: str | None
    expires_at: str | None
    authorization_expires_at: str | None
    created_at: str
    fx: FxLegResponse | None
    history: list[StateChangeResponse]
    fees: list[FeeResponse]
    transfers: list[TransferSummary]
    refunds: list[RefundResponse]
    disputes: list[DisputeResponse]


class MoneyRequestResponse(BaseModel):
    id: str
    payer: str
    payee: str
    amount: str
    currency: str
    note: str | None
    state: str
    payment_id: str | None
    expires_at: str


class NotificationReceipt(BaseModel):
    """Stored (202); the worker applies it. `duplicate`: this event id was stored before."""

    notification_id: str
    duplicate: bool

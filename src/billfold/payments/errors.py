"""Payments' errors: every expected failure is a 4xx with a stable code.

BillfoldError
├── NotFound
│   ├── PaymentNotFound            404 payment_not_found
│   ├── RefundNotFound             404 refund_not_found
│   ├── DisputeNotFound            404 dispute_not_found
│   ├── MoneyRequestNotFound       404 money_request_not_found
│   ├── RecipientNotFound          404 recipient_not_found
│   └── UnknownProvider            404 unknown_provider
├── Conflict
│   ├── InvalidStateTransition     409 invalid_state_transition
│   ├── PaymentExpired             409 payment_expired
│   ├── CaptureInProgress          409 capture_in_progress
│   ├── MoneyRequestExpired        409 money_request_expired
│   └── AccountFrozen              409 account_frozen (a risk response froze a wallet)
└── ValidationFailed
    ├── InsufficientFunds          422 insufficient_funds
    ├── LimitExceeded              422 limit_exceeded
    ├── RefundExceedsCaptured      422 refund_exceeds_captured
    ├── CaptureExceedsAuthorized   422 capture_exceeds_authorized
    ├── SelfPayment                422 self_payment
    ├── FeesExceedAmount           422 fees_exceed_amount
    ├── InvalidSplitRule           422 invalid_split_rule
    ├── FxQuoteMismatch            422 fx_quote_mismatch
    ├── LiveProviderUnavailable    422 live_provider_unavailable
    └── LedgerRefused              422 ledger_refused
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed

__all__ = [
    "AccountFrozen",
    "CaptureExceedsAuthorized",
    "CaptureInProgress",
    "DisputeNotFound",
    "FeesExceedAmount",
    "FxQuoteMismatch",
    "InsufficientFunds",
    "InvalidSplitRule",
    "InvalidStateTransition",
    "LedgerRefused",
    "LimitExceeded",
    "LiveProviderUnavailable",
    "MoneyRequestExpired",
    "MoneyRequestNotFound",
    "PaymentExpired",
    "PaymentNotFound",
    "RecipientNotFound",
    "RefundExceedsCaptured",
    "RefundNotFound",
    "SelfPayment",
    "StepUpRequired",
    "UnknownProvider",
]


class PaymentNotFound(NotFound):
    code = "payment_not_found"
    title = "Payment not found"


class RefundNotFound(NotFound):
    code = "refund_not_found"
    title = "Refund not found"


class DisputeNotFound(NotFound):
    code = "dispute_not_found"
    title = "Dispute not found"


class MoneyRequestNotFound(NotFound):
    code = "money_request_not_found"
    title = "Money request not found"


class RecipientNotFound(NotFound):
    code = "recipient_not_found"
    title = "Recipient not found"


class UnknownProvider(NotFound):
    code = "unknown_provider"
    title = "Unknown provider"


class LiveProviderUnavailable(ValidationFailed):
    """A live-mode top-up or withdrawal, where the only providers are the sandboxes (which
    confirm any test card: live money would be made from nothing)."""

    code = "live_provider_unavailable"
    title = "No live payment provider for this method"


class InvalidStateTransition(Conflict):
    code = "invalid_state_transition"
    title = "Not allowed in the current state"


class PaymentExpired(Conflict):
    code = "payment_expired"
    title = "Payment expired"


class CaptureInProgress(Conflict):
    """Another amount's capture is under way (its fees priced, the ledger maybe moving
    it): only that amount can be captured (`amount`), until it is recorded or the hold is
    voided or expires."""

    code = "capture_in_progress"
    title = "Another capture is in progress"


class MoneyRequestExpired(Conflict):
    code = "money_request_expired"
    title = "Money request expired"


class AccountFrozen(Conflict):
    """A wallet the movement touches is frozen (the risk response `freeze_account`, or an
    operator): the ledger refuses every transfer on it until it is unfrozen."""

    code = "account_frozen"
    title = "The account is frozen"


class InsufficientFunds(ValidationFailed):
    code = "insufficient_funds"
    title = "Insufficient funds"


class LimitExceeded(ValidationFailed):
    code = "limit_exceeded"
    title = "Limit exceeded"


class RefundExceedsCaptured(ValidationFailed):
    code = "refund_exceeds_captured"
    title = "Refund exceeds the captured amount"


class CaptureExceedsAuthorized(ValidationFailed):
    code = "capture_exceeds_authorized"
    title = "Capture exceeds the authorized amount"


class SelfPayment(ValidationFailed):
    code = "self_payment"
    title = "Payer and payee are the same"


class FeesExceedAmount(ValidationFailed):
    code = "fees_exceed_amount"
    title = "Fees exceed the amount"


class InvalidSplitRule(ValidationFailed):
    code = "invalid_split_rule"
    title = "Invalid split rule"


class LedgerRefused(ValidationFailed):
    code = "ledger_refused"
    title = "The ledger refused the transfer"


class StepUpRequired(Forbidden):
    """Carries `amount`, `currency` and `payee`: what the step-up token must be bound to."""

    code = "step_up_required"
    title = "Step-up authentication required"


class FxQuoteMismatch(ValidationFailed):
    code = "fx_quote_mismatch"
    title = "The FX quote does not fit this payment"

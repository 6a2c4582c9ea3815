"""The shapes the API answers with, as TypedDicts (the decoded JSON, unchanged).

Amounts, balances, ledger timestamps and webhook endpoint and delivery times (ns since the
epoch) are decimal strings: they exceed 2^53, which JSON numbers cannot carry exactly in
most languages. Other times (`created_at`, `expires_at`, …) are RFC 3339 strings.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypedDict, TypeVar

__all__ = [
    "PAYMENT_STATES",
    "Account",
    "AccountCreated",
    "AccountPage",
    "ApiKey",
    "ApiKeyCreated",
    "ApiKeyPage",
    "Approval",
    "ApprovalPage",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEntryPage",
    "AuditInclusionProof",
    "BalanceHistoryPage",
    "BalanceRecord",
    "Balances",
    "Consent",
    "ConsentList",
    "Detokenized",
    "Device",
    "DeviceList",
    "DeviceSignatureVerified",
    "Dispute",
    "Erasure",
    "Event",
    "EventPage",
    "EventReplay",
    "ExportedConsent",
    "ExportedUser",
    "FeeLine",
    "FeeQuote",
    "FeeRule",
    "FeeSchedule",
    "FeeSchedulePage",
    "FeeTier",
    "FxConversion",
    "FxQuote",
    "FxQuotePage",
    "FxRates",
    "FxSettings",
    "JSONObject",
    "JsonWebKey",
    "JsonWebKeySet",
    "KycTier",
    "LimitInForce",
    "LimitOverride",
    "Me",
    "Merchant",
    "MfaRequired",
    "MoneyRequest",
    "NotificationReceipt",
    "Operator",
    "OperatorCreated",
    "OperatorPage",
    "OperatorSession",
    "Page",
    "Passkey",
    "PasskeyList",
    "PasskeyOptions",
    "PasskeyRegistered",
    "Payment",
    "PaymentFee",
    "PaymentFx",
    "PaymentStateChange",
    "PaymentTransfer",
    "Pii",
    "PiiExport",
    "PiiFieldName",
    "PiiSearch",
    "RecoveryCodes",
    "Refund",
    "RiskCase",
    "RiskCaseDecision",
    "RiskCaseDetail",
    "RiskCaseNote",
    "RiskCasePage",
    "RiskCaseResolution",
    "RiskDecision",
    "RiskDecisionPage",
    "RiskDecisionSummary",
    "RiskLabel",
    "RiskModel",
    "RiskModelAlert",
    "RiskModelAlertPage",
    "RiskModelPage",
    "RiskModelTraining",
    "RiskProfile",
    "RiskResponse",
    "RiskResponsePage",
    "RiskResponseReversal",
    "RiskRule",
    "RiskRuleDetail",
    "RiskRuleEvaluation",
    "RiskRuleHit",
    "RiskRulePage",
    "RiskRuleVersion",
    "Session",
    "SessionList",
    "SessionsRevoked",
    "SignIn",
    "SplitRule",
    "StepUpChallenge",
    "StepUpToken",
    "StreamedEvent",
    "SystemAccount",
    "SystemAccounts",
    "TierDefault",
    "TierLimit",
    "TierLimits",
    "Token",
    "TokenKind",
    "Tokens",
    "TotpEnrolment",
    "Transfer",
    "TransferBatch",
    "TransferCreated",
    "TransferPage",
    "TransferResult",
    "User",
    "UserLimits",
    "UserPage",
    "Wallet",
    "WalletList",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryPage",
    "WebhookEndpoint",
    "WebhookEndpointPage",
]

JSONObject = dict[str, Any]
T = TypeVar("T")


class Page(TypedDict, Generic[T]):
    """One page of a listing; pass `next_cursor` back as `cursor` while it is not None."""

    items: list[T]
    next_cursor: str | None


# ----------------------------------------------------------------------------- ledger


class Account(TypedDict):
    id: str
    ledger: str
    code: int
    flags: list[str]
    owner_ref: str | None
    user_data: str | None
    status: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    timestamp: str


class AccountCreated(Account):
    result: Literal["ok", "exists"]


AccountPage = Page[Account]


class Transfer(TypedDict):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: str
    ledger: str
    code: int
    flags: list[str]
    pending_id: str | None
    timeout_s: int
    user_data: str | None
    timestamp: str
    expires_at: str | None


class TransferCreated(Transfer):
    result: Literal["ok", "exists"]


TransferPage = Page[Transfer]


class TransferResult(TypedDict):
    index: int
    id: str
    result: str
    timestamp: str | None
    amount: str | None


class TransferBatch(TypedDict):
    results: list[TransferResult]


class Balances(TypedDict):
    account_id: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    as_of: str | None
    transfer_id: str | None


class BalanceRecord(TypedDict):
    transfer_id: str
    timestamp: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str


BalanceHistoryPage = Page[BalanceRecord]

# ----------------------------------------------------------------------------- API keys


class ApiKey(TypedDict):
    id: str
    tenant_id: str
    name: str
    mode: Literal["test", "live"]
    scopes: list[str]
    prefix: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class ApiKeyCreated(ApiKey):
    secret: str


ApiKeyPage = Page[ApiKey]

# ----------------------------------------------------------------------------- end users


class User(TypedDict):
    id: str
    tenant_id: str
    mode: Literal["test", "live"]
    email: str | None
    phone: str | None
    handle: str | None
    status: Literal["active", "disabled"]
    locked_until: str | None
    created_at: str


UserPage = Page[User]


class Me(User):
    mfa_methods: list[str]


class Tokens(TypedDict):
    session_id: str
    token_type: Literal["Bearer"]
    access_token: str
    access_token_expires_at: str
    refresh_token: str
    refresh_token_expires_at: str


class MfaRequired(TypedDict):
    mfa_token: str
    expires_at: str
    methods: list[str]


class SignIn(TypedDict):
    status: Literal["authenticated", "mfa_required"]
    tokens: Tokens | None
    mfa: MfaRequired | None


class Session(TypedDict):
    id: str
    methods: str
    created_at: str
    expires_at: str
    refreshed_at: str | None
    current: bool


class SessionList(TypedDict):
    items: list[Session]


class SessionsRevoked(TypedDict):
    revoked: int


class TotpEnrolment(TypedDict):
    secret: str
    provisioning_uri: str
    digits: int
    period_s: int
    algorithm: Literal["SHA1"]


class RecoveryCodes(TypedDict):
    recovery_codes: list[str] | None


class PasskeyOptions(TypedDict):
    options: JSONObject


class Passkey(TypedDict):
    id: str
    name: str
    aaguid: str
    created_at: str
    last_used_at: str | None


class PasskeyRegistered(TypedDict):
    passkey: Passkey
    recovery_codes: list[str] | None


class PasskeyList(TypedDict):
    items: list[Passkey]


class Device(TypedDict):
    id: str
    name: str
    algorithm: Literal["ed25519", "p256"]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class DeviceList(TypedDict):
    items: list[Device]


class DeviceSignatureVerified(TypedDict):
    device_id: str
    verified: Literal[True]


class StepUpChallenge(TypedDict):
    id: str
    amount: int
    currency: str
    payee: str
    method: Literal["totp", "device"]
    device_id: str | None
    challenge: str
    message_to_sign: str | None
    expires_at: str


class StepUpToken(TypedDict):
    step_up_token: str
    expires_at: str


# ----------------------------------------------------------------------------- operators


class Operator(TypedDict):
    id: str
    tenant_id: str
    email: str
    display_name: str
    roles: list[str]
    permissions: list[str]
    status: Literal["active", "disabled"]
    password_change_required: bool
    created_at: str
    updated_at: str


class OperatorCreated(Operator):
    one_time_password: str


OperatorPage = Page[Operator]


class OperatorSession(TypedDict):
    token: str
    expires_at: str
    operator: Operator


class Approval(TypedDict):
    id: str
    tenant_id: str
    action_type: Literal[
        "ledger_adjustment",
        "account_unfreeze",
        "limit_increase",
        "key_rotation",
        "risk_rule_change",
        "risk_response_reversal",
        "risk_model_promotion",
        "tier_limits_change",
    ]
    payload: JSONObject
    reason: str
    status: Literal["pending", "approved", "refused", "expired", "executed", "failed"]
    requested_by: str
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decision_note: str | None
    executed_at: str | None
    result: JSONObject | None


ApprovalPage = Page[Approval]


# ----------------------------------------------------------------------------- fees


class FeeTier(TypedDict):
    volume_from_minor: int
    bps: int
    fixed_minor: int
    min_minor: int | None
    max_minor: int | None


class FeeRule(TypedDict):
    name: str
    method: str | None
    currency: str | None
    regions: list[str] | None
    tiers: list[FeeTier]


class FeeSchedule(TypedDict):
    id: str
    merchant_id: str | None
    name: str
    version: int
    rules: list[FeeRule]
    created_at: str
    updated_at: str


FeeSchedulePage = Page[FeeSchedule]


class FeeLine(TypedDict):
    rule: str
    description: str
    amount: str
    currency: str


class FeeQuote(TypedDict):
    lines: list[FeeLine]
    total: str
    currency: str


# ----------------------------------------------------------------------------- FX


class FxRates(TypedDict):
    base: Literal["EUR"]
    date: str
    rates: dict[str, str]
    """Units of each currency per 1 EUR, as decimal strings."""


class FxQuote(TypedDict):
    id: str
    sell_currency: str
    buy_currency: str
    sell_amount: str
    buy_amount: str
    fixed_side: Literal["sell", "buy"]
    rate: str
    mid_rate: str
    spread_bps: int
    rates_date: str
    created_at: str
    expires_at: str
    status: Literal["open", "expired", "claimed", "used"]
    """`claimed`: a conversion with it is under way, or was interrupted (retry it)."""
    claimed_at: str | None
    used_at: str | None
    sell_account_id: str | None
    buy_account_id: str | None


FxQuotePage = Page[FxQuote]


class FxConversion(TypedDict):
    quote: FxQuote
    sell_transfer_id: str
    buy_transfer_id: str
    id: str | None
    """`cnv_…` (one conversion per quote): a held conversion's case reference."""
    state: str
    """`succeeded`, or `in_review` (HTTP 202): held by a risk decision, both legs pending."""
    risk_decision_id: str | None


class FxSettings(TypedDict):
    spread_bps: int
    quote_ttl_s: int
    custom: bool


# ----------------------------------------------------------------------------- keys


class JsonWebKey(TypedDict):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class JsonWebKeySet(TypedDict):
    keys: list[JsonWebKey]


# ----------------------------------------------------------------------------- privacy

PiiFieldName = Literal["name", "email", "phone", "national_id", "address", "bank_account"]
TokenKind = Literal["pan", "bank_account"]


class Pii(TypedDict):
    user_id: str
    masked: bool
    fields: dict[PiiFieldName, str]


class PiiSearch(TypedDict):
    user_ids: list[str]


class Token(TypedDict):
    id: str
    kind: TokenKind
    token: str
    last4: str
    masked: str
    created_at: str


class Detokenized(TypedDict):
    id: str
    kind: TokenKind
    token: str
    value: str


class Consent(TypedDict):
    id: str
    purpose: str
    version: str
    granted_at: str
    withdrawn_at: str | None


class ConsentList(TypedDict):
    items: list[Consent]


class ExportedUser(TypedDict):
    id: str
    email: str | None
    phone: str | None
    handle: str | None
    status: str
    created_at_ns: int


class ExportedConsent(TypedDict):
    purpose: str
    version: str
    granted_at_ns: int
    withdrawn_at_ns: int | None


class PiiExport(TypedDict):
    user: ExportedUser
    pii: dict[PiiFieldName, str]
    consents: list[ExportedConsent]


class Erasure(TypedDict):
    user_id: str
    data_keys_destroyed: int
    values_deleted: int
    consents_withdrawn: int


# ----------------------------------------------------------------------------- audit


class AuditEntry(TypedDict):
    """Hashes lowercase hex; `occurred_at_ns` a decimal string; `before`, `after` and
    `detail` canonical JSON text exactly as hashed."""

    id: str
    chain_id: str
    sequence: int
    tenant_id: str | None
    occurred_at_ns: str
    actor_type: str | None
    actor_id: str | None
    action: str
    target: str | None
    source_ip: str | None
    user_agent: str | None
    before: str | None
    after: str | None
    detail: str | None
    previous_hash: str
    entry_hash: str


AuditEntryPage = Page[AuditEntry]


class AuditCheckpoint(TypedDict):
    """`signature` (hex) is Ed25519 over the bytes of `message`; pin your own copy of the
    public key rather than trusting `public_key`."""

    id: str
    chain_id: str
    number: int
    first_sequence: int
    last_sequence: int
    root_hash: str
    head_hash: str
    previous_hash: str
    checkpoint_hash: str
    created_at_ns: str
    key_id: str
    public_key: str
    signature: str
    message: str


class AuditInclusionProof(TypedDict):
    """RFC 9162: `inclusion_path` (hex) proves the entry's leaf at `leaf_index` in the tree
    of `tree_size` leaves whose root is `checkpoint.root_hash`."""

    entry: AuditEntry
    entry_encoding: str
    leaf_index: int
    tree_size: int
    inclusion_path: list[str]
    checkpoint: AuditCheckpoint


# ----------------------------------------------------------------------------- events


class WebhookEndpoint(TypedDict):
    """Times (`created_at`, `updated_at`, `previous_secret_expires_at`, `throttled_until`,
    `failing_since`) are ns since the epoch as decimal strings (`int()` them): beyond 2^53,
    which JSON numbers cannot carry exactly in most languages. `secret` (`whsec_…`) only in
    the answers of create and rotate-secret, else None."""

    id: str
    url: str
    description: str
    event_types: list[str]
    status: str
    disabled_reason: str | None
    batch_size_max: int
    created_at: str
    updated_at: str
    previous_secret_expires_at: str | None
    throttled_until: str | None
    failing_since: str | None
    secret: str | None


WebhookEndpointPage = Page[WebhookEndpoint]


class WebhookAttempt(TypedDict):
    attempted_at: str
    """ns since the epoch, a decimal string."""
    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int


class WebhookDelivery(TypedDict):
    """Times (`next_attempt_at`, `created_at`, `completed_at`) are ns since the epoch as
    decimal strings."""

    id: str
    event_id: str
    status: str
    """pending, succeeded or dead (dead-lettered)."""
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    replay: bool
    created_at: str
    completed_at: str | None
    attempt_log: list[WebhookAttempt]


WebhookDeliveryPage = Page[WebhookDelivery]


class Event(TypedDict):
    """A CloudEvents 1.0 event (JSON format); extension attributes may follow."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    sequence: str
    data: JSONObject


EventPage = Page[Event]


class EventReplay(TypedDict):
    delivery_ids: list[str]


class StreamedEvent(TypedDict):
    """One Server-Sent Event of the live stream: `id` is the event's sequence number (pass
    it back as `last_event_id` to resume), `event` its type."""

    id: str
    event: str
    data: Event


# ----------------------------------------------------------------------------- wallets


class Wallet(TypedDict):
    """`wal_<hex>`: the same hex is the ledger account (`acc_<hex>`)."""

    id: str
    owner: str
    currency: str
    available: str
    pending: str
    held: str


class WalletList(TypedDict):
    items: list[Wallet]


class RiskProfile(TypedDict):
    user_id: str
    residence_country: str | None
    updated_at: str | None


class Merchant(TypedDict):
    id: str
    legal_name: str
    category_code: str
    settlement_currency: str
    fee_schedule: str | None
    mode: str


class SystemAccount(TypedDict):
    name: str
    account_id: str
    code: int
    debits_posted: str
    credits_posted: str
    debits_pending: str
    credits_pending: str


class SystemAccounts(TypedDict):
    currency: str
    items: list[SystemAccount]


class KycTier(TypedDict):
    user_id: str
    tier: int


class LimitOverride(TypedDict):
    amount: str
    approval_id: str
    approved_at: str


class LimitInForce(TypedDict):
    window: Literal["per_transaction", "daily", "monthly"]
    limit: str
    source: Literal["tier", "override", "risk_reduction"]
    tier_limit: str
    tier_source: Literal["default", "tenant"]
    override: LimitOverride | None
    reduction_bps: int | None


class UserLimits(TypedDict):
    user_id: str
    currency: str
    tier: int
    limits: list[LimitInForce]


class TierLimit(TypedDict):
    """One KYC tier's limits in one currency (minor units): the tenant's own (`source`
    `tenant`, with the approval that set them) or the default table's, scaled."""

    tier: int
    currency: str
    per_transaction: str
    daily: str
    monthly: str
    source: Literal["default", "tenant"]
    approval_id: str | None
    approved_at: str | None


class TierDefault(TypedDict):
    """The default table's row for one tier, in whole units of any currency."""

    tier: int
    per_transaction_units: str
    daily_units: str
    monthly_units: str


class TierLimits(TypedDict):
    mode: Literal["test", "live"]
    currency: str | None
    items: list[TierLimit]
    defaults: list[TierDefault]


# ----------------------------------------------------------------------------- payments


class PaymentStateChange(TypedDict):
    from_state: str | None
    to_state: str
    reason: str | None
    at: str


class PaymentFee(TypedDict):
    rule: str
    description: str
    amount: str
    currency: str
    transfer_id: str


class PaymentTransfer(TypedDict):
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


class Refund(TypedDict):
    id: str
    payment_id: str
    amount: str
    state: str
    reason: str | None
    failure_code: str | None
    fee_returned: str
    """Capture fees returned to the merchant with this refund (pro rata, fixed part kept)."""
    risk_decision_id: str | None
    """The risk decision (`rdc_…`) that admitted, held (`state` in_review) or blocked it."""


class PaymentFx(TypedDict):
    """How a cross-currency payment was converted (the locked quote it used)."""

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


class Dispute(TypedDict):
    id: str
    payment_id: str
    amount: str
    held_amount: str
    state: str
    opened_by: str
    reason: str | None
    evidence: list[JSONObject]


PAYMENT_STATES = (
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
)
"""Every state a payment can be in."""


class Payment(TypedDict):
    """A payment with its history, fees, ledger transfers, refunds and disputes."""

    id: str
    kind: str
    state: str
    """One of `PAYMENT_STATES`; `in_review` (HTTP 202): held by a risk decision until an
    analyst approves or rejects it, or the hold expires."""
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
    failure_code: str | None
    """Why it failed; `risk_blocked`, `risk_rejected`, `risk_review_expired` for risk."""
    risk_decision_id: str | None
    """The risk decision (`rdc_…`); None when the server runs no risk engine."""
    next_action_url: str | None
    expires_at: str | None
    authorization_expires_at: str | None
    created_at: str
    fx: PaymentFx | None
    history: list[PaymentStateChange]
    fees: list[PaymentFee]
    transfers: list[PaymentTransfer]
    refunds: list[Refund]
    disputes: list[Dispute]


class SplitRule(TypedDict):
    id: str
    name: str
    levels: int


class MoneyRequest(TypedDict):
    id: str
    payer: str
    payee: str
    amount: str
    currency: str
    note: str | None
    state: str
    payment_id: str | None
    expires_at: str


class NotificationReceipt(TypedDict):
    notification_id: str
    duplicate: bool


# ----------------------------------------------------------------------------- risk

RiskAction = Literal["allow", "challenge", "review", "block"]


class RiskRuleVersion(TypedDict):
    version: int
    expression: str
    action: RiskAction
    score: int
    reason: str
    responses: list[str]
    enforcement: Literal["shadow", "enforcing"]
    state: Literal["pending_approval", "active", "superseded", "disabled", "rejected"]
    created_by: str
    created_at: str
    approval_id: str | None
    activated_at: str | None
    activated_by: str | None


class RiskRule(TypedDict):
    id: str
    mode: Literal["test", "live"]
    name: str
    current_version: int | None
    latest_version: int
    created_by: str
    created_at: str
    updated_at: str
    disable_approval_id: str | None


class RiskRuleDetail(RiskRule):
    versions: list[RiskRuleVersion]


RiskRulePage = Page[RiskRule]


class RiskRuleEvaluation(TypedDict):
    matched: bool
    error: str | None


class RiskRuleHit(TypedDict):
    rule_id: str
    version: int
    name: str
    action: RiskAction
    score: int
    reason: str
    shadow: bool
    responses: list[str]


class RiskDecisionSummary(TypedDict):
    id: str
    kind: str
    reference: str | None
    user_id: str | None
    amount: str
    """Minor units, a decimal string."""
    currency: str
    action: RiskAction
    score: int
    model_score: float | None
    ruleset_version: int | None
    created_at: str


class RiskCase(TypedDict):
    """A movement held for review. `state`: open, resolving (decided, the held money not
    moved yet), approved, rejected or expired."""

    id: str
    mode: Literal["test", "live"]
    state: Literal["open", "resolving", "approved", "rejected", "expired"]
    kind: str
    reference: str
    user_id: str | None
    amount: str
    currency: str
    decision_id: str
    opened_at: str
    hold_expires_at: str
    resolved_at: str | None
    resolved_by: str | None


class RiskCaseDecision(TypedDict):
    id: str
    action: str
    score: int
    reasons: list[str]
    features: JSONObject
    hits: list[Any]
    model_score: float | None
    ruleset_version: int | None
    created_at: str


class RiskDecision(RiskDecisionSummary):
    payee: str | None
    merchant_id: str | None
    device_id: str | None
    reasons: list[str]
    hits: list[RiskRuleHit]
    features: dict[str, bool | int | float | str | None]


RiskDecisionPage = Page[RiskDecisionSummary]


class RiskLabel(TypedDict):
    """A fraud label as stored (`POST /v1/risk/labels`)."""

    reference: str
    fraud: bool
    source: str
    decision_id: str | None
    changed: bool


class RiskCaseResolution(TypedDict):
    action: Literal["post", "void"]
    state: Literal["pending", "settled"]
    attempts: int
    last_error: str | None
    requested_at: str
    settled_at: str | None


class RiskCaseNote(TypedDict):
    id: str
    author_id: str
    body: str
    created_at: str


class RiskCaseDetail(RiskCase):
    decision: RiskCaseDecision | None
    resolution: RiskCaseResolution | None
    notes: list[RiskCaseNote]


RiskCasePage = Page[RiskCase]


class RiskResponse(TypedDict):
    """An automated response applied to an end user; `detail` records what it changed."""

    id: str
    mode: Literal["test", "live"]
    user_id: str
    kind: Literal["freeze_account", "lower_limits", "hold_outgoing"]
    state: Literal["active", "reversing", "reversed"]
    decision_id: str | None
    detail: JSONObject
    applied_at: str
    reversed_at: str | None
    reversed_by: str | None


RiskResponsePage = Page[RiskResponse]


class RiskResponseReversal(TypedDict):
    response: RiskResponse
    approval_id: str
    approval_status: str


class RiskModel(TypedDict):
    id: str
    mode: str
    name: str
    version: int
    kind: Literal["supervised", "anomaly"]
    status: Literal["shadow", "active", "retired"]
    trained_on: int
    metrics: JSONObject
    created_at_ns: str
    created_by: str | None
    promoted_at_ns: str | None
    promoted_by: str | None
    retired_at_ns: str | None
    promotion_approval_id: str | None


RiskModelPage = Page[RiskModel]


class RiskModelTraining(TypedDict):
    learned: dict[str, int]
    created: list[RiskModel]


class RiskModelAlert(TypedDict):
    id: str
    mode: str
    model_id: str
    kind: Literal["drift"]
    metric: Literal["psi"]
    value: float
    threshold: float
    window_size: int
    reference_size: int
    created_at_ns: str


RiskModelAlertPage = Page[RiskModelAlert]

"""The shapes the API answers with, as TypedDicts (the decoded JSON, unchanged).

Amounts, balances and ledger timestamps (ns since the epoch) are decimal strings: they
exceed 2^53, which JSON numbers cannot carry exactly in most languages. Other times
(`created_at`, `expires_at`, …) are RFC 3339 strings.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypedDict, TypeVar

__all__ = [
    "Account",
    "AccountCreated",
    "AccountPage",
    "ApiKey",
    "ApiKeyCreated",
    "ApiKeyPage",
    "Approval",
    "ApprovalPage",
    "BalanceHistoryPage",
    "BalanceRecord",
    "Balances",
    "Device",
    "DeviceList",
    "DeviceSignatureVerified",
    "JSONObject",
    "Me",
    "MfaRequired",
    "Operator",
    "OperatorCreated",
    "OperatorPage",
    "OperatorSession",
    "Page",
    "Passkey",
    "PasskeyList",
    "PasskeyOptions",
    "PasskeyRegistered",
    "RecoveryCodes",
    "Session",
    "SessionList",
    "SessionsRevoked",
    "SignIn",
    "StepUpChallenge",
    "StepUpToken",
    "Tokens",
    "TotpEnrolment",
    "Transfer",
    "TransferBatch",
    "TransferCreated",
    "TransferPage",
    "TransferResult",
    "User",
    "UserPage",
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
    action_type: Literal["ledger_adjustment", "account_unfreeze", "limit_increase", "key_rotation"]
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

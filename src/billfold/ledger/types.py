"""The ledger's vocabulary: accounts, transfers, flags and per-item results."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from billfold.kit.money import AMOUNT_MAX

__all__ = [
    "ACCOUNT_ID_PREFIX",
    "AMOUNT_MAX",
    "BATCH_SIZE_MAX",
    "CODE_MAX",
    "NIL_ID",
    "TIMEOUT_MAX_S",
    "TRANSFER_ID_PREFIX",
    "USER_DATA_LENGTH_MAX",
    "Account",
    "AccountFlags",
    "AccountResult",
    "AccountStatus",
    "BalanceRecord",
    "Balances",
    "CreateAccountStatus",
    "CreateTransferStatus",
    "NewAccount",
    "NewTransfer",
    "PendingStatus",
    "Transfer",
    "TransferFlags",
    "TransferResult",
]

ACCOUNT_ID_PREFIX = "acc"
TRANSFER_ID_PREFIX = "txf"
"""The public ids' prefixes (`billfold.kit.ids.format_id`): `acc_<32 hex>`, `txf_<32 hex>`."""

BATCH_SIZE_MAX = 8190
"""Most accounts or transfers in one call, as in TigerBeetle."""

CODE_MAX = 65_535
TIMEOUT_MAX_S = 2**32 - 1
USER_DATA_LENGTH_MAX = 128
NIL_ID = uuid.UUID(int=0)


class AccountFlags(enum.IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2
    HISTORY = 4


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8
    BALANCING_DEBIT = 16
    BALANCING_CREDIT = 32
    EXPIRY = 64
    """Set by the ledger alone, on the void it records when a pending transfer times out."""


CLIENT_TRANSFER_FLAGS = (
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING
    | TransferFlags.VOID_PENDING
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
)
CLIENT_ACCOUNT_FLAGS = (
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
)


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class PendingStatus(enum.StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class CreateAccountStatus(enum.StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    LEDGER_INVALID = "ledger_invalid"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    CODE_EXCEEDS_MAXIMUM = "code_exceeds_maximum"
    USER_DATA_TOO_LONG = "user_data_too_long"


class CreateTransferStatus(enum.StrEnum):
    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_REQUIRED = "debit_account_id_required"
    CREDIT_ACCOUNT_ID_REQUIRED = "credit_account_id_required"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    AMOUNT_MUST_NOT_BE_NEGATIVE = "amount_must_not_be_negative"
    AMOUNT_EXCEEDS_MAXIMUM = "amount_exceeds_maximum"
    LEDGER_INVALID = "ledger_invalid"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    CODE_EXCEEDS_MAXIMUM = "code_exceeds_maximum"
    USER_DATA_TOO_LONG = "user_data_too_long"
    ACCOUNT_NOT_FOUND = "account_not_found"
    LEDGERS_MUST_MATCH = "ledgers_must_match"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_CLOSED = "account_closed"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_FIELDS = "pending_transfer_has_different_fields"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    OVERFLOWS_TIMEOUT = "overflows_timeout"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to open. `id` is chosen by the caller and makes the request idempotent."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    ledger: str
    code: int
    flags: int = 0
    owner_ref: str | None = None
    user_data: str | None = None


@dataclass(slots=True)
class Account:
    """An account and its four balances, as stored."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    ledger: str
    code: int
    flags: int
    owner_ref: str | None
    user_data: str | None
    status: AccountStatus
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    timestamp: int

    @property
    def balance_posted(self) -> int:
        """Credits minus debits, posted only (the natural balance of a liability account)."""
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class NewTransfer:
    """A transfer to apply. `id` is the ledger's idempotency key.

    For `post_pending` and `void_pending`, the accounts, ledger and code may be left out (they
    come from the pending transfer) and `amount` may be left out (post or void it all). For
    `balancing_*` transfers, `amount` is the most to move; left out, it means "all there is".
    """

    id: uuid.UUID
    tenant_id: uuid.UUID
    debit_account_id: uuid.UUID | None = None
    credit_account_id: uuid.UUID | None = None
    amount: int | None = None
    ledger: str | None = None
    code: int | None = None
    flags: int = 0
    pending_id: uuid.UUID | None = None
    timeout_s: int = 0
    user_data: str | None = None


class Transfer(NamedTuple):
    """A transfer as recorded: immutable, timestamped by the ledger."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    ledger: str
    code: int
    flags: int
    pending_id: uuid.UUID | None
    timeout_s: int
    user_data: str | None
    timestamp: int
    expires_at: int | None
    """When a pending transfer with a timeout expires, in ns since the epoch."""


@dataclass(slots=True)
class AccountResult:
    index: int
    id: uuid.UUID
    status: CreateAccountStatus
    timestamp: int | None


@dataclass(slots=True)
class TransferResult:
    """The outcome of one transfer in a batch; `timestamp` and `amount` describe the
    recorded transfer when the status is `ok` or `exists`. (Not frozen: one is built per
    transfer and a frozen dataclass costs three times as much to build.)"""

    index: int
    id: uuid.UUID
    status: CreateTransferStatus
    timestamp: int | None = None
    amount: int | None = None


class Balances(NamedTuple):
    """An account's four balances at one moment, frozen for writing."""

    account_id: uuid.UUID
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class BalanceRecord(NamedTuple):
    """An account's balances right after one transfer (accounts with the `history` flag)."""

    account_id: uuid.UUID
    transfer_id: uuid.UUID
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

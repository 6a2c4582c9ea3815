"""The ledger API's request and response models (pydantic v2).

Ids are prefixed strings: `acc_<32 hex>` for accounts, `txf_<32 hex>` for transfers.
**Amounts, balances and timestamps are decimal strings in responses**: they go up to
2^127-1 (timestamps, ns since the epoch, beyond 2^53), and JavaScript and many JSON
libraries hold numbers as doubles, which would round them silently. Requests may send an
amount as a string of digits or as a JSON integer. Flags are lists of names.

The models check shapes and sizes; the ledger decides everything else and answers with its
own result names (`ledger_invalid`, `code_exceeds_maximum`, `user_data_too_long`, …), so
the API and the batch results speak the same language. The OpenAPI document states the
ledger's bounds (`code` 1-65535, `owner_ref` and `user_data` up to 128 characters), not the
looser ones the models check: a value past them is a result, not `validation_failed`.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from billfold.kit.fields import JsonInt, decimal_pattern
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import Page
from billfold.ledger.types import (
    ACCOUNT_ID_PREFIX,
    AMOUNT_MAX,
    BATCH_SIZE_MAX,
    CODE_MAX,
    TRANSFER_ID_PREFIX,
    USER_DATA_LENGTH_MAX,
    Account,
    AccountFlags,
    AccountResult,
    BalanceRecord,
    CreateAccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    Transfer,
    TransferFlags,
    TransferResult,
)

__all__ = [
    "ACCOUNT_ID_PREFIX",
    "TRANSFER_ID_PREFIX",
    "AccountCreateRequest",
    "AccountCreated",
    "AccountPage",
    "AccountResponse",
    "BalanceHistoryPage",
    "BalanceRecordResponse",
    "BalancesResponse",
    "TransferBatchRequest",
    "TransferBatchResponse",
    "TransferCreateRequest",
    "TransferCreated",
    "TransferPage",
    "TransferResponse",
    "TransferResultResponse",
]

# Generous bounds on what the ledger itself checks more tightly (and answers with a result):
# they only keep absurd input from reaching it. The document states the ledger's own bounds
# (`_LedgerText`, `_LedgerCode`), so a client built from it sends nothing the ledger refuses.
_TEXT_LENGTH_MAX = 1024
_ASSET_CODE_LENGTH_MAX = 64
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_FLAG_NAMES_MAX = 8
_AMOUNT_PATTERN = decimal_pattern(AMOUNT_MAX, minimum=0)
_AMOUNT_TEXT = re.compile(_AMOUNT_PATTERN, re.ASCII)

AccountFlagName = Literal[
    "debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "history"
]
TransferFlagName = Literal[
    "linked", "pending", "post_pending", "void_pending", "balancing_debit", "balancing_credit"
]


def _id_field(prefix: str, description: str, *, default: Any = None) -> Any:
    """A prefixed id in a request; `default=...` makes it required."""
    return Field(
        default,
        pattern=f"^{prefix}_[0-9a-f]{{32}}$",
        description=description,
        examples=[f"{prefix}_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"],
    )


def _parse_id(text: str) -> uuid.UUID:
    # Only called on text the field's pattern already matched.
    return uuid.UUID(hex=text.partition("_")[2])


def _optional_id(text: str | None) -> uuid.UUID | None:
    return None if text is None else _parse_id(text)


def _amount(value: object) -> object:
    """An amount from JSON: a non-negative integer, as a number or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("an amount is a non-negative integer: a JSON integer or a digit string")
    if isinstance(value, str):
        if not _AMOUNT_TEXT.fullmatch(value):
            raise ValueError(
                "an amount string is 0 to 2^127-1 in the digits 0-9, without leading zeros"
            )
        value = int(value)
    if value < 0:
        raise ValueError("an amount must not be negative")
    if value > AMOUNT_MAX:
        raise ValueError("an amount must not exceed 2^127-1")
    return value


AmountIn = Annotated[
    int,
    BeforeValidator(_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{_AMOUNT_PATTERN}$"},
                {"type": "integer", "minimum": 0, "maximum": AMOUNT_MAX},
            ],
            "description": "Minor units, 0 to 2^127-1: a digit string (preferred) or an integer.",
        }
    ),
]


def _storable(text: str) -> str:
    """Text the databases can store: no NUL (PostgreSQL refuses it) and no lone surrogate
    (not UTF-8). Checked here because a transfer shares its database transaction with
    other requests' transfers, which a value the database refuses would fail with it."""
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from error
    return text


StorableText = Annotated[str, AfterValidator(_storable)]

_LedgerText = Annotated[
    StorableText,
    Field(max_length=_TEXT_LENGTH_MAX),
    WithJsonSchema({"type": "string", "maxLength": USER_DATA_LENGTH_MAX}),
]
"""`owner_ref` or `user_data`: documented as the ledger's 128 characters, which the ledger
checks (`user_data_too_long`, per transfer in a batch); the model only refuses absurd sizes."""

_LedgerAsset = Annotated[
    StorableText,
    Field(min_length=1, max_length=_ASSET_CODE_LENGTH_MAX),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z0-9]{2,12}$"}),
]
"""The `ledger` (asset code): documented as the ledger's 2-12 of A-Z and 0-9
(`kit.money.is_asset_code`), which the ledger checks (`ledger_invalid`); the model only
refuses absurd sizes."""

_LedgerCode = Annotated[
    JsonInt,
    Field(ge=0, le=_INT32_MAX),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": CODE_MAX}),
]
"""An account's or transfer's `code`: documented as the ledger's 1-65535, which the ledger
checks (`code_must_not_be_zero`, `code_exceeds_maximum`); the model refuses negative numbers
and numbers past 2^31-1 (`validation_failed`)."""


def _flag_names(flags: int, kind: type[AccountFlags] | type[TransferFlags]) -> list[str]:
    return [str(member.name).lower() for member in kind if member.value and flags & member.value]


def _account_flags(names: list[AccountFlagName]) -> int:
    return int(sum({AccountFlags[name.upper()] for name in names}))


def _transfer_flags(names: list[TransferFlagName]) -> int:
    return int(sum({TransferFlags[name.upper()] for name in names}))


class _Request(BaseModel):
    # A misspelt field ("ammount") must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- accounts


class AccountCreateRequest(_Request):
    """An account to open. Send your own `id` to make retries safe; without one, each
    request opens a new account (unless it repeats an `Idempotency-Key`)."""

    id: str | None = _id_field(ACCOUNT_ID_PREFIX, "Your id for the account (optional).")
    ledger: _LedgerAsset = Field(
        description="The asset: an ISO 4217 code or a custom one, 2-12 of A-Z and 0-9.",
        examples=["USD"],
    )
    code: _LedgerCode = Field(description="The account type, 1-65535.")
    flags: list[AccountFlagName] = Field(default_factory=list, max_length=_FLAG_NAMES_MAX)
    owner_ref: _LedgerText | None = Field(
        default=None, description="Whose account, up to 128 characters."
    )
    user_data: _LedgerText | None = Field(
        default=None, description="Free text, up to 128 characters."
    )

    def fields_too_long(self) -> list[str]:
        """The text fields longer than the ledger keeps: its one result for them,
        `user_data_too_long`, does not say which."""
        texts = {"owner_ref": self.owner_ref, "user_data": self.user_data}
        return [
            name
            for name, text in texts.items()
            if text is not None and len(text) > USER_DATA_LENGTH_MAX
        ]

    def to_new_account(self, *, tenant_id: uuid.UUID) -> NewAccount:
        return NewAccount(
            id=new_id() if self.id is None else _parse_id(self.id),
            tenant_id=tenant_id,
            ledger=self.ledger,
            code=self.code,
            flags=_account_flags(self.flags),
            owner_ref=self.owner_ref,
            user_data=self.user_data,
        )


class AccountResponse(BaseModel):
    """An account and its four balances (decimal strings)."""

    id: str
    ledger: str
    code: int
    flags: list[str]
    owner_ref: str | None
    user_data: str | None
    status: str = Field(description="active, frozen or closed.")
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    timestamp: str = Field(description="When the ledger opened it: ns since the epoch.")

    @classmethod
    def from_account(cls, account: Account) -> AccountResponse:
        return cls(
            id=format_id(ACCOUNT_ID_PREFIX, account.id),
            ledger=account.ledger,
            code=account.code,
            flags=_flag_names(account.flags, AccountFlags),
            owner_ref=account.owner_ref,
            user_data=account.user_data,
            status=account.status.value,
            debits_pending=str(account.debits_pending),
            debits_posted=str(account.debits_posted),
            credits_pending=str(account.credits_pending),
            credits_posted=str(account.credits_posted),
            timestamp=str(account.timestamp),
        )


class AccountCreated(AccountResponse):
    result: Literal["ok", "exists"] = Field(
        description="`ok` (201): opened now; `exists` (200): opened before with these fields."
    )

    @classmethod
    def from_result(cls, result: AccountResult, account: Account) -> AccountCreated:
        fields = AccountResponse.from_account(account).model_dump()
        accepted = "ok" if result.status is CreateAccountStatus.OK else "exists"
        return cls(**fields, result=accepted)


class AccountPage(BaseModel):
    items: list[AccountResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[Account]) -> AccountPage:
        items = [AccountResponse.from_account(account) for account in page.items]
        return cls(items=items, next_cursor=page.next_cursor)


# ----------------------------------------------------------------------------- transfers


class TransferCreateRequest(_Request):
    """A transfer. Its `id` is the ledger's idempotency key: sending the same transfer
    again answers `exists` and never moves money twice."""

    id: str = _id_field(TRANSFER_ID_PREFIX, "Your id for the transfer (required).", default=...)
    debit_account_id: str | None = _id_field(ACCOUNT_ID_PREFIX, "The account debited.")
    credit_account_id: str | None = _id_field(ACCOUNT_ID_PREFIX, "The account credited.")
    amount: AmountIn | None = None
    ledger: _LedgerAsset | None = Field(default=None)
    code: _LedgerCode | None = Field(default=None, description="Why it moves, 1-65535.")
    flags: list[TransferFlagName] = Field(default_factory=list, max_length=_FLAG_NAMES_MAX)
    pending_id: str | None = _id_field(
        TRANSFER_ID_PREFIX, "For post_pending and void_pending: the pending transfer."
    )
    timeout_s: JsonInt = Field(
        default=0, ge=0, le=_INT64_MAX, description="For pending: seconds until it expires."
    )
    user_data: _LedgerText | None = Field(
        default=None, description="Free text, up to 128 characters."
    )

    def to_new_transfer(self, *, tenant_id: uuid.UUID) -> NewTransfer:
        return NewTransfer(
            id=_parse_id(self.id),
            tenant_id=tenant_id,
            debit_account_id=_optional_id(self.debit_account_id),
            credit_account_id=_optional_id(self.credit_account_id),
            amount=self.amount,
            ledger=self.ledger,
            code=self.code,
            flags=_transfer_flags(self.flags),
            pending_id=_optional_id(self.pending_id),
            timeout_s=self.timeout_s,
            user_data=self.user_data,
        )


class TransferResponse(BaseModel):
    """A transfer as recorded; immutable."""

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
    timestamp: str = Field(description="Assigned by the ledger: ns since the epoch.")
    expires_at: str | None = Field(description="For a pending transfer with a timeout.")

    @classmethod
    def fields_of(cls, transfer: Transfer) -> dict[str, Any]:
        return {
            "id": format_id(TRANSFER_ID_PREFIX, transfer.id),
            "debit_account_id": format_id(ACCOUNT_ID_PREFIX, transfer.debit_account_id),
            "credit_account_id": format_id(ACCOUNT_ID_PREFIX, transfer.credit_account_id),
            "amount": str(transfer.amount),
            "ledger": transfer.ledger,
            "code": transfer.code,
            "flags": _flag_names(transfer.flags, TransferFlags),
            "pending_id": None
            if transfer.pending_id is None
            else format_id(TRANSFER_ID_PREFIX, transfer.pending_id),
            "timeout_s": transfer.timeout_s,
            "user_data": transfer.user_data,
            "timestamp": str(transfer.timestamp),
            "expires_at": None if transfer.expires_at is None else str(transfer.expires_at),
        }

    @classmethod
    def from_transfer(cls, transfer: Transfer) -> TransferResponse:
        return cls(**cls.fields_of(transfer))


class TransferCreated(TransferResponse):
    result: Literal["ok", "exists"] = Field(
        description="`ok` (201): recorded now; `exists` (200): recorded before."
    )

    @classmethod
    def from_result(cls, result: TransferResult, transfer: Transfer) -> TransferCreated:
        accepted = "ok" if result.status is CreateTransferStatus.OK else "exists"
        return cls(**cls.fields_of(transfer), result=accepted)


class TransferBatchRequest(_Request):
    """Up to 8,190 transfers, applied in order in one database transaction."""

    transfers: list[TransferCreateRequest] = Field(min_length=1, max_length=BATCH_SIZE_MAX)

    def to_new_transfers(self, *, tenant_id: uuid.UUID) -> list[NewTransfer]:
        return [transfer.to_new_transfer(tenant_id=tenant_id) for transfer in self.transfers]


class TransferResultResponse(BaseModel):
    """One transfer's outcome; `timestamp` and `amount` when it is `ok` or `exists`."""

    index: int
    id: str
    result: str = Field(description="`ok`, `exists`, or why the ledger refused it.")
    timestamp: str | None
    amount: str | None

    @classmethod
    def from_result(cls, result: TransferResult) -> TransferResultResponse:
        return cls(
            index=result.index,
            id=format_id(TRANSFER_ID_PREFIX, result.id),
            result=result.status.value,
            timestamp=None if result.timestamp is None else str(result.timestamp),
            amount=None if result.amount is None else str(result.amount),
        )


class TransferBatchResponse(BaseModel):
    results: list[TransferResultResponse] = Field(description="One per transfer, in order.")


class TransferPage(BaseModel):
    items: list[TransferResponse]
    next_cursor: str | None = Field(
        description="Follow it while it is not null; a filtered page may hold fewer items."
    )

    @classmethod
    def from_page(cls, page: Page[Transfer]) -> TransferPage:
        items = [TransferResponse.from_transfer(transfer) for transfer in page.items]
        return cls(items=items, next_cursor=page.next_cursor)


# ----------------------------------------------------------------------------- balances


class BalancesResponse(BaseModel):
    """An account's four balances now, or as of a timestamp (after the last transfer at or
    before it, named by `transfer_id`; all zero if there was none)."""

    account_id: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    as_of: str | None
    transfer_id: str | None

    @classmethod
    def current(cls, account: Account) -> BalancesResponse:
        return cls(
            account_id=format_id(ACCOUNT_ID_PREFIX, account.id),
            debits_pending=str(account.debits_pending),
            debits_posted=str(account.debits_posted),
            credits_pending=str(account.credits_pending),
            credits_posted=str(account.credits_posted),
            as_of=None,
            transfer_id=None,
        )

    @classmethod
    def historical(
        cls, *, account_id: uuid.UUID, as_of: int, record: BalanceRecord | None
    ) -> BalancesResponse:
        return cls(
            account_id=format_id(ACCOUNT_ID_PREFIX, account_id),
            debits_pending=str(record.debits_pending if record else 0),
            debits_posted=str(record.debits_posted if record else 0),
            credits_pending=str(record.credits_pending if record else 0),
            credits_posted=str(record.credits_posted if record else 0),
            as_of=str(as_of),
            transfer_id=format_id(TRANSFER_ID_PREFIX, record.transfer_id) if record else None,
        )


class BalanceRecordResponse(BaseModel):
    """The account's balances right after one of its transfers."""

    transfer_id: str
    timestamp: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str

    @classmethod
    def from_record(cls, record: BalanceRecord) -> BalanceRecordResponse:
        return cls(
            transfer_id=format_id(TRANSFER_ID_PREFIX, record.transfer_id),
            timestamp=str(record.timestamp),
            debits_pending=str(record.debits_pending),
            debits_posted=str(record.debits_posted),
            credits_pending=str(record.credits_pending),
            credits_posted=str(record.credits_posted),
        )


class BalanceHistoryPage(BaseModel):
    items: list[BalanceRecordResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[BalanceRecord]) -> BalanceHistoryPage:
        items = [BalanceRecordResponse.from_record(record) for record in page.items]
        return cls(items=items, next_cursor=page.next_cursor)


# ----------------------------------------------------------------------------- problems

"""The shapes the API answers with. Amounts and timestamps are decimal strings: they exceed
2^53, which JSON numbers cannot carry exactly in most languages."""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "Account",
    "AccountPage",
    "Balances",
    "Transfer",
    "TransferPage",
    "TransferResult",
]


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


class AccountPage(TypedDict):
    items: list[Account]
    next_cursor: str | None


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


class TransferPage(TypedDict):
    items: list[Transfer]
    next_cursor: str | None


class TransferResult(TypedDict):
    index: int
    id: str
    result: str
    timestamp: str | None
    amount: str | None


class Balances(TypedDict):
    account_id: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    as_of: str | None
    transfer_id: str | None


JSONObject = dict[str, Any]

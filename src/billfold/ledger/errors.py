"""The ledger's typed errors. Per-item outcomes of creating accounts and transfers are
results (`CreateTransferStatus`), not exceptions; these are for the calls around them, and
for an API that creates one item and must answer a refused result with a problem.

    BillfoldError
    ├── NotFound
    │   ├── AccountNotFound                 account_not_found (404)
    │   │   └── HistoryNotKept              history_not_kept (404)
    │   └── TransferNotFound                transfer_not_found (404)
    ├── Conflict
    │   ├── AccountHasPendingBalance        account_has_pending_balance (409)
    │   ├── AccountClosed                   account_closed (409)
    │   └── (one per result)                exists_with_different_fields (409)
    ├── ValidationFailed
    │   ├── BatchTooLarge                   batch_too_large (422)
    │   └── (one per result)                the result itself: exceeds_credits, … (422)
    └── ServiceUnavailable
        └── LedgerBusy                      ledger_busy (503)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from billfold.kit.errors import (
    BillfoldError,
    Conflict,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from billfold.ledger.types import USER_DATA_LENGTH_MAX, CreateAccountStatus, CreateTransferStatus

__all__ = [
    "AccountClosed",
    "AccountHasPendingBalance",
    "AccountNotFound",
    "BatchTooLarge",
    "HistoryNotKept",
    "LedgerBusy",
    "TransferNotFound",
    "account_refused",
    "transfer_refused",
]


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class HistoryNotKept(AccountNotFound):
    """The account exists but was opened without the `history` flag: it has no past
    balances to show."""

    code = "history_not_kept"
    title = "Account keeps no balance history"


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    title = "Transfer not found"


class AccountHasPendingBalance(Conflict):
    code = "account_has_pending_balance"
    title = "Account has pending transfers"


class AccountClosed(Conflict):
    """A closed account's status cannot change: closing is for good. (TigerBeetle reopens
    an account only by voiding the pending transfer that closed it; Billfold closes
    without one, so nothing reopens it.)"""

    code = "account_closed"
    title = "Account closed"


class BatchTooLarge(ValidationFailed):
    code = "batch_too_large"
    title = "Too many items in one batch"


class LedgerBusy(ServiceUnavailable):
    code = "ledger_busy"
    title = "The ledger's queue is full; retry shortly"


_ACCEPTED = frozenset({"ok", "exists"})


def _result_errors(statuses: Iterable[StrEnum], *, noun: str) -> dict[str, type[BillfoldError]]:
    """One error class per refusing result, whose `code` is the result itself, so a client
    of a single-item route branches on the same names as a client of the batch route. The
    title is the code's alone (`Account not found`), the same whether an account or a
    transfer was refused and the same as the 404 of that name: RFC 9457 keeps a problem
    type's title from one occurrence to the next; the detail names what was refused."""
    errors: dict[str, type[BillfoldError]] = {}
    for status in statuses:
        if status.value in _ACCEPTED:
            continue
        base = Conflict if status.value == "exists_with_different_fields" else ValidationFailed
        name = noun + "".join(part.title() for part in status.value.split("_"))
        attributes = {
            "code": status.value,
            "title": status.value.replace("_", " ").capitalize(),
            "__module__": __name__,
        }
        errors[status.value] = type(name, (base,), attributes)
    return errors


_ACCOUNT_ERRORS = _result_errors(CreateAccountStatus, noun="Account")
_TRANSFER_ERRORS = _result_errors(CreateTransferStatus, noun="Transfer")


def account_refused(status: CreateAccountStatus, *, too_long: Sequence[str] = ()) -> BillfoldError:
    """The problem for an account the ledger did not open (409 or 422, code = result).

    The ledger has one result, `user_data_too_long`, for `owner_ref` and `user_data` alike;
    `too_long` names the fields over its 128 characters, for the detail and the `fields`
    extension, so the problem says which one it was without a result the ledger lacks."""
    error = _ACCOUNT_ERRORS[status.value]
    if status is CreateAccountStatus.USER_DATA_TOO_LONG and too_long:
        names = " and ".join(too_long) + (" are" if len(too_long) > 1 else " is")
        return error(
            f"The ledger refused the account: {names} longer than {USER_DATA_LENGTH_MAX}"
            " characters.",
            fields=list(too_long),
            length_max=USER_DATA_LENGTH_MAX,
        )
    return error(f"The ledger refused the account: {status.value}.")


def transfer_refused(status: CreateTransferStatus) -> BillfoldError:
    """The problem for a transfer the ledger did not record (409 or 422, code = result)."""
    return _TRANSFER_ERRORS[status.value](f"The ledger refused the transfer: {status.value}.")

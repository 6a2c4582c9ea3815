"""The ledger's typed errors. Per-item outcomes of creating accounts and transfers are
results (`CreateTransferStatus`), not exceptions; these are for the calls around them.

    BillfoldError
    ├── NotFound
    │   └── AccountNotFound                 account_not_found (404)
    ├── Conflict
    │   └── AccountHasPendingBalance        account_has_pending_balance (409)
    ├── ValidationFailed
    │   └── BatchTooLarge                   batch_too_large (422)
    └── ServiceUnavailable
        └── LedgerBusy                      ledger_busy (503)
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed

__all__ = ["AccountHasPendingBalance", "AccountNotFound", "BatchTooLarge", "LedgerBusy"]


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class AccountHasPendingBalance(Conflict):
    code = "account_has_pending_balance"
    title = "Account has pending transfers"


class BatchTooLarge(ValidationFailed):
    code = "batch_too_large"
    title = "Too many items in one batch"


class LedgerBusy(ServiceUnavailable):
    code = "ledger_busy"
    title = "The ledger's queue is full; retry shortly"

"""RFC 9457 section 3.1.3: a problem type's title "SHOULD NOT change from occurrence to
occurrence". A ledger result is one problem type whether an account or a transfer was
refused, and `account_not_found` is the same type as the 404 of that name."""

from __future__ import annotations

from billfold.ledger.errors import AccountNotFound, account_refused, transfer_refused
from billfold.ledger.types import CreateAccountStatus, CreateTransferStatus

_ACCEPTED = {"ok", "exists"}


def test_each_ledger_result_has_one_title_whatever_was_refused() -> None:
    titles: dict[str, set[str]] = {}
    for account_status in CreateAccountStatus:
        if account_status.value not in _ACCEPTED:
            error = account_refused(account_status)
            titles.setdefault(error.code, set()).add(error.title)
    for transfer_status in CreateTransferStatus:
        if transfer_status.value not in _ACCEPTED:
            error = transfer_refused(transfer_status)
            titles.setdefault(error.code, set()).add(error.title)
    titles.setdefault(AccountNotFound.code, set()).add(AccountNotFound.title)
    assert all(len(named) == 1 for named in titles.values()), titles
    assert titles["account_not_found"] == {"Account not found"}
    assert titles["exceeds_credits"] == {"Exceeds credits"}


def test_the_detail_still_names_what_was_refused() -> None:
    assert "account" in str(account_refused(CreateAccountStatus.LEDGER_INVALID).detail)
    assert "transfer" in str(transfer_refused(CreateTransferStatus.LEDGER_INVALID).detail)

"""Ledger accounts, transfers, balances and balance history (API key with `ledger:read`
or `ledger:write`)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    Account,
    AccountCreated,
    AccountPage,
    BalanceHistoryPage,
    BalanceRecord,
    Balances,
    Transfer,
    TransferCreated,
    TransferPage,
    TransferResult,
)

__all__ = [
    "BATCH_SIZE_MAX",
    "Accounts",
    "Transfers",
    "account_body",
    "check_batch_size",
    "new_account_id",
    "new_transfer_id",
    "transfer_body",
    "transfer_query",
]

BATCH_SIZE_MAX = 8190
"""Transfers in one batch, at most (the server's limit)."""


def new_transfer_id() -> str:
    """A fresh transfer id: keep it and reuse it to retry the same transfer."""
    return f"txf_{uuid.uuid4().hex}"


def new_account_id() -> str:
    """A fresh account id: sending your own makes opening the account safe to retry."""
    return f"acc_{uuid.uuid4().hex}"


def transfer_body(
    *,
    id: str,
    debit_account_id: str | None = None,
    credit_account_id: str | None = None,
    amount: int | None = None,
    ledger: str | None = None,
    code: int | None = None,
    flags: Sequence[str] = (),
    pending_id: str | None = None,
    timeout_s: int = 0,
    user_data: str | None = None,
) -> dict[str, Any]:
    """One transfer as the API takes it (amounts sent as digit strings, exact at any size)."""
    if amount is not None and (isinstance(amount, bool) or amount < 0):
        raise ValueError("amount is a non-negative integer in minor units")
    return without_none(
        {
            "id": id,
            "debit_account_id": debit_account_id,
            "credit_account_id": credit_account_id,
            "amount": None if amount is None else str(amount),
            "ledger": ledger,
            "code": code,
            "flags": list(flags),
            "pending_id": pending_id,
            "timeout_s": timeout_s,
            "user_data": user_data,
        }
    )


def account_body(
    *,
    ledger: str,
    code: int,
    id: str | None = None,
    flags: Sequence[str] = (),
    owner_ref: str | None = None,
    user_data: str | None = None,
) -> dict[str, Any]:
    """One account as the API takes it."""
    return without_none(
        {
            "id": id,
            "ledger": ledger,
            "code": code,
            "flags": list(flags),
            "owner_ref": owner_ref,
            "user_data": user_data,
        }
    )


def transfer_query(
    *,
    limit: int | None = None,
    cursor: str | None = None,
    order: Literal["asc", "desc"] | None = None,
    code: int | None = None,
    since: int | None = None,
    until: int | None = None,
) -> dict[str, Any]:
    """The query of an account's transfer listing."""
    return without_none(
        {
            "limit": limit,
            "cursor": cursor,
            "order": order,
            "code": code,
            "since": since,
            "until": until,
        }
    )


def check_batch_size(count: int) -> None:
    if not 1 <= count <= BATCH_SIZE_MAX:
        raise ValueError(f"a batch holds 1 to {BATCH_SIZE_MAX} transfers")


class Accounts(Resource):
    def create(
        self,
        *,
        ledger: str,
        code: int,
        id: str | None = None,
        flags: Sequence[str] = (),
        owner_ref: str | None = None,
        user_data: str | None = None,
        idempotency_key: str | None = None,
    ) -> AccountCreated:
        """Open an account. `result` is `exists` when your `id` was opened before with the
        same fields; without an `id`, only the call's idempotency key guards its retries."""
        body = account_body(
            ledger=ledger, code=code, id=id, flags=flags, owner_ref=owner_ref, user_data=user_data
        )
        answer = self._transport.request(
            "POST", "/v1/accounts", json=body, idempotency_key=idempotency_key
        )
        return cast(AccountCreated, answer)

    def get(self, account_id: str) -> Account:
        path = f"/v1/accounts/{path_id(account_id)}"
        return cast(Account, self._transport.request("GET", path))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> AccountPage:
        params = without_none({"limit": limit, "cursor": cursor})
        return cast(AccountPage, self._transport.request("GET", "/v1/accounts", params=params))

    def iterate(self, *, limit: int | None = None, pages_max: int = PAGES_MAX) -> Iterator[Account]:
        """Every account, oldest first, following the cursors (at most `pages_max` pages)."""
        return iterate(lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max)

    def balances(self, account_id: str, *, as_of: int | None = None) -> Balances:
        """Balances now, or as of a ledger timestamp (ns; accounts with `history`)."""
        params = without_none({"as_of": as_of})
        path = f"/v1/accounts/{path_id(account_id)}/balances"
        return cast(Balances, self._transport.request("GET", path, params=params))

    def balance_history(
        self, account_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> BalanceHistoryPage:
        """The balances after each of the account's transfers (accounts with `history`)."""
        params = without_none({"limit": limit, "cursor": cursor})
        path = f"/v1/accounts/{path_id(account_id)}/balance-history"
        return cast(BalanceHistoryPage, self._transport.request("GET", path, params=params))

    def iterate_balance_history(
        self, account_id: str, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[BalanceRecord]:
        return iterate(
            lambda cursor: self.balance_history(account_id, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )


class Transfers(Resource):
    def create(
        self,
        *,
        id: str,
        debit_account_id: str | None = None,
        credit_account_id: str | None = None,
        amount: int | None = None,
        ledger: str | None = None,
        code: int | None = None,
        flags: Sequence[str] = (),
        pending_id: str | None = None,
        timeout_s: int = 0,
        user_data: str | None = None,
        idempotency_key: str | None = None,
    ) -> TransferCreated:
        """Record one transfer. Its id is the ledger's own idempotency key (`result` is
        `exists` the second time); the `Idempotency-Key` header is the transfer id too
        unless you pass another, so a retried call replays the first answer."""
        body = transfer_body(
            id=id,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=amount,
            ledger=ledger,
            code=code,
            flags=flags,
            pending_id=pending_id,
            timeout_s=timeout_s,
            user_data=user_data,
        )
        answer = self._transport.request(
            "POST", "/v1/transfers", json=body, idempotency_key=idempotency_key or id
        )
        return cast(TransferCreated, answer)

    def create_batch(
        self, transfers: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> builtins.list[TransferResult]:
        """Up to 8,190 transfers (each as `transfer_body(...)` makes it), applied in order in
        one database transaction; one result per transfer (`ok`, `exists` or why not)."""
        check_batch_size(len(transfers))
        answer = self._transport.request(
            "POST",
            "/v1/transfers/batch",
            json={"transfers": [dict(transfer) for transfer in transfers]},
            idempotency_key=idempotency_key,
        )
        return cast(builtins.list[TransferResult], answer["results"])

    def get(self, transfer_id: str) -> Transfer:
        path = f"/v1/transfers/{path_id(transfer_id)}"
        return cast(Transfer, self._transport.request("GET", path))

    def list(
        self,
        *,
        account_id: str,
        limit: int | None = None,
        cursor: str | None = None,
        order: Literal["asc", "desc"] | None = None,
        code: int | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> TransferPage:
        """An account's transfers in time order, filtered by `code` and by ledger timestamp
        (`since`/`until`, ns, inclusive). A filtered page may hold fewer items than `limit`:
        follow `next_cursor` while it is not None."""
        params = transfer_query(
            limit=limit, cursor=cursor, order=order, code=code, since=since, until=until
        )
        path = f"/v1/accounts/{path_id(account_id)}/transfers"
        return cast(TransferPage, self._transport.request("GET", path, params=params))

    def iterate(
        self,
        *,
        account_id: str,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
        code: int | None = None,
        since: int | None = None,
        until: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[Transfer]:
        """Every matching transfer of the account, following the cursors."""
        return iterate(
            lambda cursor: self.list(
                account_id=account_id,
                limit=limit,
                cursor=cursor,
                order=order,
                code=code,
                since=since,
                until=until,
            ),
            pages_max=pages_max,
        )

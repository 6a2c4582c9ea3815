"""The ledger resources for asyncio (`AsyncBillfold`): the same calls, bodies and checks as
`resources.ledger`, awaited."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, cast

from billfold.client._transport import AsyncTransport
from billfold.client.pagination import PAGES_MAX, iterate_async
from billfold.client.resources._base import path_id, without_none
from billfold.client.resources.ledger import (
    account_body,
    check_batch_size,
    transfer_body,
    transfer_query,
)
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

__all__ = ["AsyncAccounts", "AsyncTransfers"]


class _AsyncResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport


class AsyncAccounts(_AsyncResource):
    async def create(
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
        body = account_body(
            ledger=ledger, code=code, id=id, flags=flags, owner_ref=owner_ref, user_data=user_data
        )
        answer = await self._transport.request(
            "POST", "/v1/accounts", json=body, idempotency_key=idempotency_key
        )
        return cast(AccountCreated, answer)

    async def get(self, account_id: str) -> Account:
        path = f"/v1/accounts/{path_id(account_id)}"
        return cast(Account, await self._transport.request("GET", path))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> AccountPage:
        params = without_none({"limit": limit, "cursor": cursor})
        answer = await self._transport.request("GET", "/v1/accounts", params=params)
        return cast(AccountPage, answer)

    def iterate(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> AsyncIterator[Account]:
        return iterate_async(
            lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max
        )

    async def balances(self, account_id: str, *, as_of: int | None = None) -> Balances:
        params = without_none({"as_of": as_of})
        path = f"/v1/accounts/{path_id(account_id)}/balances"
        return cast(Balances, await self._transport.request("GET", path, params=params))

    async def balance_history(
        self, account_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> BalanceHistoryPage:
        params = without_none({"limit": limit, "cursor": cursor})
        path = f"/v1/accounts/{path_id(account_id)}/balance-history"
        return cast(BalanceHistoryPage, await self._transport.request("GET", path, params=params))

    def iterate_balance_history(
        self, account_id: str, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> AsyncIterator[BalanceRecord]:
        return iterate_async(
            lambda cursor: self.balance_history(account_id, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )


class AsyncTransfers(_AsyncResource):
    async def create(
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
        answer = await self._transport.request(
            "POST", "/v1/transfers", json=body, idempotency_key=idempotency_key or id
        )
        return cast(TransferCreated, answer)

    async def create_batch(
        self, transfers: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> builtins.list[TransferResult]:
        check_batch_size(len(transfers))
        answer = await self._transport.request(
            "POST",
            "/v1/transfers/batch",
            json={"transfers": [dict(transfer) for transfer in transfers]},
            idempotency_key=idempotency_key,
        )
        return cast(builtins.list[TransferResult], answer["results"])

    async def get(self, transfer_id: str) -> Transfer:
        path = f"/v1/transfers/{path_id(transfer_id)}"
        return cast(Transfer, await self._transport.request("GET", path))

    async def list(
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
        params = transfer_query(
            limit=limit, cursor=cursor, order=order, code=code, since=since, until=until
        )
        path = f"/v1/accounts/{path_id(account_id)}/transfers"
        return cast(TransferPage, await self._transport.request("GET", path, params=params))

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
    ) -> AsyncIterator[Transfer]:
        return iterate_async(
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

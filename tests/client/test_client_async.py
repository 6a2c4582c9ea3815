"""`AsyncBillfold` against the real application (lifespan running, ASGI transport) on both
backends: the ledger calls, the iterator, and a retried transfer that applies once."""

from __future__ import annotations

import inspect
import uuid

import httpx
import pytest

from billfold.app import create_app
from billfold.client import AsyncBillfold, ValidationError, new_transfer_id, transfer_body
from billfold.client.resources.ledger import Accounts, Transfers
from billfold.client.resources.ledger_async import AsyncAccounts, AsyncTransfers
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from client.sdk_support import BASE_URL, LEDGER_SCOPES
from identity.identity_support import bootstrap_tenant, create_key


class DropFirstAnswer(httpx.AsyncBaseTransport):
    """Lets the application handle every request, but loses the first answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.attempts: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request)
        response = await self._inner.handle_async_request(request)
        if len(self.attempts) == 1:
            await response.aread()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.fixture
def api_key(database_url: str) -> str:
    tenant = bootstrap_tenant(database_url, name=f"Async {uuid.uuid4().hex[:6]}")
    scopes: list[Scope] = list(LEDGER_SCOPES)
    return create_key(database_url, tenant_id=tenant.tenant.id, scopes=scopes).secret


@pytest.mark.anyio
async def test_the_async_client_moves_money_once_through_a_lost_answer(
    database_url: str, api_key: str
) -> None:
    app = create_app(Settings(database_url=database_url))
    delays_s: list[float] = []

    async def sleep(seconds: float) -> None:
        delays_s.append(seconds)

    async with app.router.lifespan_context(app):
        lossy = DropFirstAnswer(httpx.ASGITransport(app=app))
        async with AsyncBillfold(
            api_key=api_key, base_url=BASE_URL, http_transport=lossy, sleep=sleep
        ) as billfold:
            debit = await billfold.accounts.create(ledger="USD", code=1)
            credit = await billfold.accounts.create(ledger="USD", code=1, flags=["history"])
            assert len(lossy.attempts) == 3  # the first create was retried with its key
            keys = [attempt.headers["Idempotency-Key"] for attempt in lossy.attempts[:2]]
            assert keys[0] == keys[1]
            assert [a["id"] async for a in billfold.accounts.iterate(limit=1)] == [
                debit["id"],
                credit["id"],
            ]
            transfer_id = new_transfer_id()
            created = await billfold.transfers.create(
                id=transfer_id,
                debit_account_id=debit["id"],
                credit_account_id=credit["id"],
                amount=300,
                ledger="USD",
                code=1,
            )
            assert created["result"] == "ok"
            batch = await billfold.transfers.create_batch(
                [
                    transfer_body(
                        id=new_transfer_id(),
                        debit_account_id=debit["id"],
                        credit_account_id=credit["id"],
                        amount=amount,
                        ledger="USD",
                        code=2,
                    )
                    for amount in (1, 2)
                ]
            )
            assert [result["result"] for result in batch] == ["ok", "ok"]
            assert (await billfold.transfers.get(transfer_id))["amount"] == "300"
            listed = [
                t["amount"]
                async for t in billfold.transfers.iterate(account_id=credit["id"], code=2, limit=1)
            ]
            assert listed == ["1", "2"]
            assert (await billfold.accounts.get(credit["id"]))["credits_posted"] == "303"
            balances = await billfold.accounts.balances(credit["id"])
            assert balances["credits_posted"] == "303"
            history = await billfold.accounts.balance_history(credit["id"], limit=5)
            assert [record["credits_posted"] for record in history["items"]] == [
                "300",
                "301",
                "303",
            ]
            records = billfold.accounts.iterate_balance_history(credit["id"], limit=1)
            assert [record["credits_posted"] async for record in records] == ["300", "301", "303"]
            every = [t async for t in billfold.transfers.iterate(account_id=credit["id"])]
            window = billfold.transfers.iterate(
                account_id=credit["id"],
                since=int(every[1]["timestamp"]),
                until=int(every[1]["timestamp"]),
                limit=1,
            )
            assert [t["amount"] async for t in window] == ["1"]
            page = await billfold.transfers.list(account_id=credit["id"], order="desc", limit=1)
            assert page["items"][0]["amount"] == "2"
            assert (await billfold.accounts.list(limit=5))["next_cursor"] is None
            assert (await billfold.request("GET", "/v1/accounts"))["items"]
            with pytest.raises(ValidationError) as invalid:
                await billfold.accounts.create(ledger="USD", code=1, flags=["nope"])
            assert invalid.value.code == "validation_failed"
    assert len(delays_s) == 1


def test_the_async_resources_have_the_sync_ones_methods_and_arguments() -> None:
    """`AsyncBillfold` offers `accounts` and `transfers` "with the same methods"."""
    for sync, asynchronous in ((Accounts, AsyncAccounts), (Transfers, AsyncTransfers)):
        names = {name for name in vars(sync) if not name.startswith("_")}
        assert names == {name for name in vars(asynchronous) if not name.startswith("_")}
        for name in names:
            expected = inspect.signature(getattr(sync, name)).parameters
            got = inspect.signature(getattr(asynchronous, name)).parameters
            assert [(p.name, p.kind, p.default) for p in got.values()] == [
                (p.name, p.kind, p.default) for p in expected.values()
            ], name

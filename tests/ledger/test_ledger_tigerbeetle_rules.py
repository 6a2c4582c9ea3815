"""TigerBeetle's rules where Billfold used to differ, seen over HTTP and through `Ledger`, on
SQLite and PostgreSQL: a zero id is no id, the last event of an open chain is always
`linked_event_chain_open`, and a closed account stays closed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from billfold.ledger.errors import AccountClosed
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    NIL_ID,
    AccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    TransferFlags,
)
from ledger.ledger_api_support import (
    api,
    assert_problem,
    auth,
    balances,
    make_keys,
    open_account,
    post_transfer,
    transfer,
    transfer_id,
)

Status = CreateTransferStatus
_ZERO_TRANSFER = "txf_" + "0" * 32
_ZERO_ACCOUNT = "acc_" + "0" * 32


def _batch(client: Any, key: str, transfers: list[dict[str, Any]]) -> list[str]:
    response = client.post("/v1/transfers/batch", json={"transfers": transfers}, headers=auth(key))
    assert response.status_code == 200, response.text
    return [item["result"] for item in response.json()["results"]]


def test_a_zero_pending_id_on_a_regular_transfer_is_no_pending_id(database_url: str) -> None:
    """TigerBeetle: `pending_id` is "none" (zero) for a single-phase or pending transfer;
    only a nonzero one is `pending_id_must_be_zero`. A zero one was refused."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        body = transfer(debit, credit, "7", pending_id=_ZERO_TRANSFER)
        created = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        again = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        nonzero = transfer(debit, credit, "7", pending_id=transfer_id())
        refused = client.post("/v1/transfers", json=nonzero, headers=auth(keys.writer))
        credited = balances(client, keys.reader, credit)
    assert created.status_code == 201, created.text
    assert created.json()["pending_id"] is None
    assert again.status_code == 200 and again.json()["result"] == "exists"
    assert_problem(refused, 422, "pending_id_must_be_zero")
    assert credited["credits_posted"] == "7"


def test_zero_accounts_and_code_on_a_post_are_the_pending_transfers(database_url: str) -> None:
    """TigerBeetle: on a post or void, a zero account id or code means "the pending
    transfer's"; only a nonzero different one is refused."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        hold = post_transfer(client, keys.writer, transfer(debit, credit, "9", flags=["pending"]))
        post = {
            "id": transfer_id(),
            "pending_id": hold["id"],
            "debit_account_id": _ZERO_ACCOUNT,
            "credit_account_id": _ZERO_ACCOUNT,
            "flags": ["post_pending"],
        }
        posted = client.post("/v1/transfers", json=post, headers=auth(keys.writer))
        again = client.post("/v1/transfers", json=post, headers=auth(keys.writer))
        credited = balances(client, keys.reader, credit)
    assert posted.status_code == 201, posted.text
    assert (posted.json()["debit_account_id"], posted.json()["credit_account_id"]) == (
        debit,
        credit,
    )
    assert again.status_code == 200 and again.json()["result"] == "exists"
    assert (credited["credits_posted"], credited["credits_pending"]) == ("9", "0")


def test_the_last_event_of_an_open_chain_is_chain_open_even_after_a_failure(
    database_url: str,
) -> None:
    """TigerBeetle decides `linked_event_chain_open` for the batch's last event before it
    looks at the chain: the failing event keeps its own result, the others are
    `linked_event_failed`, the last is `linked_event_chain_open` (it was `..._failed`)."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        chain = [
            transfer(debit, credit, "1", flags=["linked"]),
            transfer(debit, credit, "0", flags=["linked"]),
            transfer(debit, credit, "1", flags=["linked"]),
            transfer(debit, credit, "1", flags=["linked"]),
        ]
        results = _batch(client, keys.writer, [transfer(debit, credit, "5"), *chain])
        credited = balances(client, keys.reader, credit)
    assert results == [
        "ok",
        "linked_event_failed",
        "amount_must_not_be_zero",
        "linked_event_failed",
        "linked_event_chain_open",
    ]
    assert credited["credits_posted"] == "5"


async def _pair(ledger: Ledger, tenant: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    ids = (uuid.uuid4(), uuid.uuid4())
    await ledger.create_accounts(
        [NewAccount(id=i, tenant_id=tenant, ledger="USD", code=1) for i in ids]
    )
    return ids


@pytest.mark.anyio
async def test_an_open_chain_failing_on_its_last_event_is_chain_open(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    debit, credit = await _pair(ledger, tenant)
    first = NewTransfer(
        id=uuid.uuid4(),
        tenant_id=tenant,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=1,
        ledger="USD",
        code=1,
        flags=TransferFlags.LINKED,
    )
    bad_last = NewTransfer(id=uuid.uuid4(), tenant_id=tenant, amount=1, flags=TransferFlags.LINKED)
    results = await ledger.create_transfers([first, bad_last])
    assert [r.status for r in results] == [
        Status.LINKED_EVENT_FAILED,
        Status.LINKED_EVENT_CHAIN_OPEN,
    ]
    zero_pending = NewTransfer(
        id=uuid.uuid4(),
        tenant_id=tenant,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=3,
        ledger="USD",
        code=1,
        pending_id=NIL_ID,
    )
    assert [r.status for r in await ledger.create_transfers([zero_pending])] == [Status.OK]
    assert [r.status for r in await ledger.create_transfers([zero_pending])] == [Status.EXISTS]
    [recorded] = await ledger.lookup_transfers(tenant_id=tenant, ids=[zero_pending.id])
    assert recorded.pending_id is None


@pytest.mark.anyio
@pytest.mark.parametrize("status", [AccountStatus.ACTIVE, AccountStatus.FROZEN])
async def test_a_closed_account_stays_closed(ledger: Ledger, status: AccountStatus) -> None:
    """TigerBeetle reopens a closed account only by voiding the pending transfer that
    closed it; Billfold closes without one, so nothing reopens it. Unfreezing or freezing
    a closed account used to make it `active` (or `frozen`, then `active`) again."""
    tenant = uuid.uuid4()
    debit, credit = await _pair(ledger, tenant)
    await ledger.set_account_status(
        tenant_id=tenant, account_id=credit, status=AccountStatus.CLOSED
    )
    with pytest.raises(AccountClosed):
        await ledger.set_account_status(tenant_id=tenant, account_id=credit, status=status)
    # Closing again is what was asked already: no error, still closed.
    await ledger.set_account_status(
        tenant_id=tenant, account_id=credit, status=AccountStatus.CLOSED
    )
    [account] = await ledger.lookup_accounts(tenant_id=tenant, ids=[credit])
    assert account.status is AccountStatus.CLOSED
    move = NewTransfer(
        id=uuid.uuid4(),
        tenant_id=tenant,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=1,
        ledger="USD",
        code=1,
    )
    assert [r.status for r in await ledger.create_transfers([move])] == [Status.ACCOUNT_CLOSED]

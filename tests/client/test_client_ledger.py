"""The SDK's ledger resources end to end against the real application, on both backends:
accounts, transfers one at a time and in batches, filtered listings, balances, history,
and the pagination iterator."""

from __future__ import annotations

import pytest

from billfold.client import (
    Billfold,
    NotFoundError,
    PaginationLimitError,
    ValidationError,
    new_account_id,
    new_transfer_id,
    transfer_body,
)
from client.sdk_support import running


def _two_accounts(billfold: Billfold, *flags: str) -> tuple[str, str]:
    debit = billfold.accounts.create(ledger="USD", code=1, flags=list(flags))
    credit = billfold.accounts.create(ledger="USD", code=1, flags=list(flags))
    return debit["id"], credit["id"]


def test_accounts_are_opened_read_and_listed(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        account_id = new_account_id()
        opened = billfold.accounts.create(
            id=account_id, ledger="USD", code=7, owner_ref="usr_1", user_data="wallet"
        )
        assert opened["result"] == "ok"
        assert opened["id"] == account_id
        again = billfold.accounts.create(
            id=account_id, ledger="USD", code=7, owner_ref="usr_1", user_data="wallet"
        )
        assert again["result"] == "exists"

        fetched = billfold.accounts.get(account_id)
        assert fetched["code"] == 7
        assert fetched["owner_ref"] == "usr_1"
        assert fetched["credits_posted"] == "0"

        assert billfold.request("get", f"/v1/accounts/{account_id}")["code"] == 7
        page = billfold.accounts.list(limit=10)
        assert [account["id"] for account in page["items"]] == [account_id]
        assert page["next_cursor"] is None

        with pytest.raises(NotFoundError) as missing:
            billfold.accounts.get(new_account_id())
        assert missing.value.code == "account_not_found"


def test_a_transfer_moves_money_once_and_reads_back(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        debit_id, credit_id = _two_accounts(billfold)
        transfer_id = new_transfer_id()
        amount = 2**100  # beyond 2^53: amounts travel as digit strings
        created = billfold.transfers.create(
            id=transfer_id,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=amount,
            ledger="USD",
            code=10,
        )
        assert created["result"] == "ok"
        assert created["amount"] == str(amount)
        assert billfold.transfers.get(transfer_id)["amount"] == str(amount)
        balances = billfold.accounts.balances(credit_id)
        assert balances["credits_posted"] == str(amount)
        assert balances["as_of"] is None
        assert billfold.accounts.get(debit_id)["debits_posted"] == str(amount)

        with pytest.raises(ValueError, match="non-negative"):
            billfold.transfers.create(
                id=new_transfer_id(),
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                amount=-1,
                ledger="USD",
                code=10,
            )


def test_a_batch_answers_one_result_per_transfer_in_order(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        debit_id, credit_id = _two_accounts(billfold)
        ids = [new_transfer_id() for _ in range(3)]
        batch = [
            transfer_body(
                id=ids[0],
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                amount=5,
                ledger="USD",
                code=1,
            ),
            transfer_body(
                id=ids[1],
                debit_account_id=debit_id,
                credit_account_id=debit_id,  # refused: same account on both sides
                amount=5,
                ledger="USD",
                code=1,
            ),
            transfer_body(
                id=ids[2],
                debit_account_id=credit_id,
                credit_account_id=debit_id,
                amount=2,
                ledger="USD",
                code=2,
            ),
        ]
        results = billfold.transfers.create_batch(batch)
        assert [result["index"] for result in results] == [0, 1, 2]
        assert [result["id"] for result in results] == ids
        assert results[0]["result"] == "ok"
        assert results[1]["result"] == "accounts_must_be_different"
        assert results[2]["result"] == "ok"
        assert billfold.accounts.get(credit_id)["credits_posted"] == "5"

        with pytest.raises(ValueError, match="8190"):
            billfold.transfers.create_batch([])


def test_listings_filter_and_the_iterator_follows_every_cursor(database_url: str) -> None:
    with running(database_url) as server, server.billfold() as billfold:
        debit_id, credit_id = _two_accounts(billfold, "history")
        amounts = [1, 2, 3, 4, 5, 6, 7]
        for index, amount in enumerate(amounts):
            billfold.transfers.create(
                id=new_transfer_id(),
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                amount=amount,
                ledger="USD",
                code=1 + index % 2,
            )
        every = list(billfold.transfers.iterate(account_id=credit_id, limit=2))
        assert [int(item["amount"]) for item in every] == amounts
        newest_first = billfold.transfers.list(account_id=credit_id, order="desc", limit=3)
        assert [int(item["amount"]) for item in newest_first["items"]] == [7, 6, 5]
        assert newest_first["next_cursor"] is not None
        code_two = list(billfold.transfers.iterate(account_id=credit_id, code=2, limit=2))
        assert [int(item["amount"]) for item in code_two] == [2, 4, 6]
        since = int(every[2]["timestamp"])
        until = int(every[4]["timestamp"])
        window = list(billfold.transfers.iterate(account_id=credit_id, since=since, until=until))
        assert [int(item["amount"]) for item in window] == [3, 4, 5]

        history = list(billfold.accounts.iterate_balance_history(credit_id, limit=3))
        assert [int(record["credits_posted"]) for record in history] == [1, 3, 6, 10, 15, 21, 28]
        one_page = billfold.accounts.balance_history(credit_id, limit=2)
        assert len(one_page["items"]) == 2
        as_of = billfold.accounts.balances(credit_id, as_of=int(history[2]["timestamp"]))
        assert as_of["credits_posted"] == "6"
        assert as_of["transfer_id"] == history[2]["transfer_id"]

        accounts = list(billfold.accounts.iterate(limit=1))
        assert [account["id"] for account in accounts] == [debit_id, credit_id]
        with pytest.raises(PaginationLimitError):
            list(billfold.transfers.iterate(account_id=credit_id, limit=2, pages_max=3))
        with pytest.raises(ValidationError) as refused:
            billfold.transfers.list(account_id=credit_id, limit=0)
        assert refused.value.code == "validation_failed"

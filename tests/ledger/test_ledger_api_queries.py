"""An account's transfers, balances and balance history over HTTP, and the ledger queries
behind them (tenant accounts, bounded transfer ranges), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from billfold.kit.ids import new_id
from billfold.kit.pagination import encode_cursor
from billfold.ledger.errors import HistoryNotKept
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import NewAccount, NewTransfer
from ledger.ledger_api_support import (
    account_id,
    api,
    assert_problem,
    auth,
    make_keys,
    open_account,
    post_transfer,
    transfer,
    transfer_id,
)

pytestmark = pytest.mark.anyio


def _pages(client: Any, key: str, path: str, **params: Any) -> tuple[list[Any], int]:
    """Every item behind `path`, following cursors; and how many pages it took."""
    items: list[Any] = []
    cursor: str | None = None
    for page_count in range(1, 100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query, headers=auth(key))
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items, page_count
    raise AssertionError("pagination did not end")


def test_an_accounts_transfers_page_in_time_order_both_ways_with_filters(
    database_url: str,
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        wallet = open_account(client, keys.writer)["id"]
        other = open_account(client, keys.writer)["id"]
        made = [
            post_transfer(client, keys.writer, transfer(other, wallet, str(n), code=1 + n % 2))
            for n in range(1, 8)
        ]
        path = f"/v1/accounts/{wallet}/transfers"
        ascending, pages = _pages(client, keys.reader, path, limit=3)
        descending, _ = _pages(client, keys.reader, path, limit=3, order="desc")
        coded, _ = _pages(client, keys.reader, path, limit=2, code=2)
        since, until = made[2]["timestamp"], made[4]["timestamp"]
        window, _ = _pages(client, keys.reader, path, limit=2, since=since, until=until)
        window_desc, _ = _pages(
            client, keys.reader, path, limit=2, since=since, until=until, order="desc"
        )
        bad_order = client.get(f"{path}?order=sideways", headers=auth(keys.reader))
    ids = [t["id"] for t in made]
    assert [t["id"] for t in ascending] == ids and pages == 3
    assert [t["id"] for t in descending] == ids[::-1]
    assert [t["id"] for t in coded] == [t["id"] for t in made if t["code"] == 2]
    assert [t["id"] for t in window] == ids[2:5]
    assert [t["id"] for t in window_desc] == ids[2:5][::-1]
    assert_problem(bad_order, 422, "validation_failed")


def test_balances_now_and_as_of_a_timestamp_and_their_history(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        wallet = open_account(client, keys.writer, flags=["history"])["id"]
        plain = open_account(client, keys.writer)["id"]
        first = post_transfer(client, keys.writer, transfer(plain, wallet, "10"))
        second = post_transfer(client, keys.writer, transfer(plain, wallet, "5"))
        path = f"/v1/accounts/{wallet}/balances"
        now = client.get(path, headers=auth(keys.reader)).json()
        before = client.get(
            path, params={"as_of": int(first["timestamp"]) - 1}, headers=auth(keys.reader)
        ).json()
        between = client.get(
            path, params={"as_of": int(second["timestamp"]) - 1}, headers=auth(keys.reader)
        ).json()
        history, pages = _pages(
            client, keys.reader, f"/v1/accounts/{wallet}/balance-history", limit=1
        )
        no_history = client.get(
            f"/v1/accounts/{plain}/balances", params={"as_of": 1}, headers=auth(keys.reader)
        )
        plain_now = client.get(f"/v1/accounts/{plain}/balances", headers=auth(keys.reader))
        no_history_list = client.get(
            f"/v1/accounts/{plain}/balance-history", headers=auth(keys.reader)
        )
    assert (now["credits_posted"], now["as_of"], now["transfer_id"]) == ("15", None, None)
    assert (before["credits_posted"], before["transfer_id"]) == ("0", None)
    assert (between["credits_posted"], between["transfer_id"]) == ("10", first["id"])
    assert [record["credits_posted"] for record in history] == ["10", "15"]
    assert [record["transfer_id"] for record in history] == [first["id"], second["id"]]
    assert pages == 3  # two full pages of one, then an empty last page
    assert_problem(no_history, 404, "history_not_kept")
    assert plain_now.json()["debits_posted"] == "15"
    assert_problem(no_history_list, 404, "history_not_kept")


def test_a_404_names_the_account_or_transfer_by_its_public_id(database_url: str) -> None:
    """`history_not_kept` showed the internal UUID (`account 01a20fc5-9eef-…`): every 404
    of the ledger's routes names the id as the caller sent it, `acc_…` or `txf_…`."""
    keys = make_keys(database_url)
    missing_account, missing_transfer = account_id(), transfer_id()
    with api(database_url) as client:
        plain = open_account(client, keys.writer)["id"]

        def get(path: str, **params: Any) -> Any:
            return client.get(path, params=params, headers=auth(keys.reader))

        answers = [
            (plain, "history_not_kept", get(f"/v1/accounts/{plain}/balances", as_of=1)),
            (plain, "history_not_kept", get(f"/v1/accounts/{plain}/balance-history")),
            (missing_account, "account_not_found", get(f"/v1/accounts/{missing_account}")),
            (
                missing_account,
                "account_not_found",
                get(f"/v1/accounts/{missing_account}/balances", as_of=1),
            ),
            (
                missing_account,
                "account_not_found",
                get(f"/v1/accounts/{missing_account}/transfers"),
            ),
            (missing_transfer, "transfer_not_found", get(f"/v1/transfers/{missing_transfer}")),
        ]
    for public_id, code, response in answers:
        detail = assert_problem(response, 404, code)["detail"]
        assert public_id in detail, (code, detail)
        assert str(uuid.UUID(hex=public_id[4:])) not in detail, (code, detail)


def test_queries_about_another_tenants_account_are_404(database_url: str) -> None:
    mine = make_keys(database_url, "Mine")
    theirs = make_keys(database_url, "Theirs")
    with api(database_url) as client:
        wallet = open_account(client, mine.writer, flags=["history"])["id"]
        paths = [
            f"/v1/accounts/{wallet}/transfers",
            f"/v1/accounts/{wallet}/balances",
            f"/v1/accounts/{wallet}/balances?as_of=1",
            f"/v1/accounts/{wallet}/balance-history",
        ]
        for path in paths:
            for key in (theirs.reader, mine.live_writer):
                assert_problem(client.get(path, headers=auth(key)), 404, "account_not_found")
            missing = path.replace(wallet, account_id())
            assert_problem(client.get(missing, headers=auth(mine.reader)), 404, "account_not_found")


@pytest.mark.parametrize(
    "query",
    ["since=-1", "until=9223372036854775808", "as_of=x", "limit=0", "code=70000", "cursor=%%"],
)
def test_query_parameters_out_of_bounds_are_4xx(database_url: str, query: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        wallet = open_account(client, keys.writer)["id"]
        path = "balances" if query.startswith("as_of") else "transfers"
        response = client.get(f"/v1/accounts/{wallet}/{path}?{query}", headers=auth(keys.reader))
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("position", [2**63, 2**70, -1, -(2**63) - 1])
def test_a_forged_cursor_beyond_any_timestamp_is_400_not_500(
    database_url: str, position: int
) -> None:
    """Cursors are not signed: one holding a number no BIGINT holds reached the database,
    which refused it with a 500 (SQLite: too large to convert; asyncpg: out of range)."""
    keys = make_keys(database_url)
    cursor = encode_cursor([position])
    with api(database_url) as client:
        wallet = open_account(client, keys.writer, flags=["history"])["id"]
        post_transfer(
            client, keys.writer, transfer(wallet, open_account(client, keys.writer)["id"])
        )
        for path in (
            "/v1/accounts",
            f"/v1/accounts/{wallet}/transfers",
            f"/v1/accounts/{wallet}/transfers?order=desc",
            f"/v1/accounts/{wallet}/balance-history",
        ):
            separator = "&" if "?" in path else "?"
            response = client.get(f"{path}{separator}cursor={cursor}", headers=auth(keys.reader))
            assert_problem(response, 400, "invalid_cursor")


# ----------------------------------------------------------------------------- the ledger


async def _open(ledger: Ledger, tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    ids = [new_id() for _ in range(count)]
    await ledger.create_accounts(
        [NewAccount(id=i, tenant_id=tenant_id, ledger="USD", code=1) for i in ids]
    )
    return ids


async def test_a_tenants_accounts_list_in_opening_order_and_no_others(ledger: Ledger) -> None:
    mine, theirs = new_id(), new_id()
    opened = await _open(ledger, mine, 5)
    await _open(ledger, theirs, 3)
    seen: list[uuid.UUID] = []
    cursor: str | None = None
    for _ in range(10):
        page = await ledger.list_accounts(tenant_id=mine, limit=2, cursor=cursor)
        seen += [account.id for account in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == opened
    assert (await ledger.list_accounts(tenant_id=new_id(), limit=10)).items == []


async def test_transfer_ranges_are_bounded_on_both_sides_and_by_code(ledger: Ledger) -> None:
    tenant = new_id()
    wallet, other = await _open(ledger, tenant, 2)
    transfers = [
        NewTransfer(
            id=new_id(),
            tenant_id=tenant,
            debit_account_id=other if n % 2 else wallet,
            credit_account_id=wallet if n % 2 else other,
            amount=n,
            ledger="USD",
            code=1 + n % 3,
        )
        for n in range(1, 10)
    ]
    results = await ledger.create_transfers(transfers)
    stamps = [result.timestamp for result in results]
    assert all(stamp is not None for stamp in stamps)
    middle = await ledger.account_transfers(
        tenant_id=tenant,
        account_id=wallet,
        limit=100,
        since_timestamp=stamps[2],
        until_timestamp=stamps[6],
    )
    newest_first = await ledger.account_transfers(
        tenant_id=tenant, account_id=wallet, limit=3, descending=True, until_timestamp=stamps[6]
    )
    coded = await ledger.account_transfers(tenant_id=tenant, account_id=wallet, limit=4, code=2)
    assert [t.id for t in middle.items] == [t.id for t in transfers[2:7]]
    assert middle.next_cursor is None
    assert [t.id for t in newest_first.items] == [t.id for t in transfers[4:7][::-1]]
    # A page scans `limit` transfers and keeps those with the code: it may hold fewer.
    assert [t.id for t in coded.items] == [t.id for t in transfers[:4] if t.code == 2]
    assert coded.next_cursor is not None


async def test_an_as_of_query_on_an_account_without_history_is_refused(ledger: Ledger) -> None:
    tenant = new_id()
    [plain] = await _open(ledger, tenant, 1)
    with pytest.raises(HistoryNotKept, match=f"^Account acc_{plain.hex} keeps no balance"):
        await ledger.balance_as_of(tenant_id=tenant, account_id=plain, timestamp=1)

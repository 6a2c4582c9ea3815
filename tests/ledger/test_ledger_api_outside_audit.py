"""An outside-in audit of the ledger over HTTP: what a client written from the README, the
OpenAPI document and RFC 9110 / RFC 9457 alone relies on, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.ledger_api_support import (
    api,
    assert_problem,
    auth,
    make_keys,
    open_account,
    post_transfer,
    transfer,
)


def _page(client: TestClient, key: str, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _follow(client: TestClient, key: str, path: str, **params: Any) -> list[Any]:
    """Every item behind `path`, following `next_cursor` with the same parameters."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(100):
        page = _page(client, key, path, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


# ----------------------------------------------------------------------------- cursors


def test_a_cursor_is_refused_by_any_list_or_parameters_but_those_that_gave_it(
    database_url: str,
) -> None:
    """A cursor was a bare timestamp that every list took: an ascending page's cursor sent
    with `order=desc` served the transfers already seen, one account's cursor skipped
    another account's earlier transfers, and a transfers cursor on `GET /v1/accounts`
    answered an empty last page (`next_cursor: null`), as if there were no more accounts,
    all with a 200. Now each is 400 `invalid_cursor`; the same list and parameters follow."""
    keys = make_keys(database_url)
    theirs = make_keys(database_url, "Theirs")
    with api(database_url) as client:
        wallet = open_account(client, keys.writer, flags=["history"])["id"]
        other = open_account(client, keys.writer, flags=["history"])["id"]
        open_account(client, theirs.writer)
        open_account(client, theirs.writer)
        made = [
            post_transfer(client, keys.writer, transfer(other, wallet, str(n), code=1 + n % 2))
            for n in range(1, 6)
        ]
        transfers = f"/v1/accounts/{wallet}/transfers"
        history = f"/v1/accounts/{wallet}/balance-history"
        cursors = {
            "transfers": _page(client, keys.reader, transfers, limit=2)["next_cursor"],
            "history": _page(client, keys.reader, history, limit=2)["next_cursor"],
            "accounts": _page(client, keys.reader, "/v1/accounts", limit=1)["next_cursor"],
            "their accounts": _page(client, theirs.reader, "/v1/accounts", limit=1)["next_cursor"],
        }
        misuses = {
            "another order": (transfers, "transfers", {"order": "desc"}),
            "another code": (transfers, "transfers", {"code": 2}),
            "another since": (transfers, "transfers", {"since": made[0]["timestamp"]}),
            "another until": (transfers, "transfers", {"until": made[4]["timestamp"]}),
            "another account": (f"/v1/accounts/{other}/transfers", "transfers", {}),
            "transfers on accounts": ("/v1/accounts", "transfers", {}),
            "transfers on history": (history, "transfers", {}),
            "history on transfers": (transfers, "history", {}),
            "accounts on transfers": (transfers, "accounts", {}),
            "another tenant's": ("/v1/accounts", "their accounts", {}),
        }
        answers = {
            case: client.get(
                path, params={**params, "cursor": cursors[kind]}, headers=auth(keys.reader)
            )
            for case, (path, kind, params) in misuses.items()
        }
        followed = _follow(client, keys.reader, transfers, limit=2, code=2, order="desc")
        # A different page size is the same list: only the position and filters are bound.
        resized = _page(client, keys.reader, transfers, limit=3, cursor=cursors["transfers"])
    for case, response in answers.items():
        body = assert_problem(response, 400, "invalid_cursor")
        assert "cursor" in body["detail"], case
    assert [t["id"] for t in followed] == [t["id"] for t in made if t["code"] == 2][::-1]
    assert [t["id"] for t in resized["items"]] == [t["id"] for t in made[2:5]]


def test_pages_stay_stable_while_transfers_are_recorded(database_url: str) -> None:
    """Keyset cursors: transfers recorded between two pages neither repeat nor hide the
    ones already listed; ascending, they come after; descending, a list begun before them
    does not show them."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        wallet = open_account(client, keys.writer)["id"]
        other = open_account(client, keys.writer)["id"]
        before = [post_transfer(client, keys.writer, transfer(other, wallet)) for _ in range(4)]
        path = f"/v1/accounts/{wallet}/transfers"
        seen: dict[str, list[str]] = {"asc": [], "desc": []}
        cursors: dict[str, str | None] = {"asc": None, "desc": None}
        during: list[dict[str, Any]] = []
        for _ in range(4):
            for order in ("asc", "desc"):
                params = {"order": order, "limit": 2}
                if cursors[order]:
                    params["cursor"] = cursors[order]
                elif seen[order]:
                    continue
                page = _page(client, keys.reader, path, **params)
                seen[order] += [t["id"] for t in page["items"]]
                cursors[order] = page["next_cursor"]
            during.append(post_transfer(client, keys.writer, transfer(other, wallet)))
    ids_before = [t["id"] for t in before]
    assert seen["asc"] == ids_before + [t["id"] for t in during][: len(seen["asc"]) - 4]
    assert len(seen["asc"]) == len(set(seen["asc"])) >= 6
    assert seen["desc"] == ids_before[::-1]


# ----------------------------------------------------------------------------- 201 Created


@pytest.mark.parametrize("kind", ["account", "transfer"])
def test_a_201_names_what_it_created_in_location(database_url: str, kind: str) -> None:
    """RFC 9110 section 15.3.2: a 201 without `Location` says the resource it created is
    the request's target, `/v1/accounts` or `/v1/transfers`, not the account or transfer.
    `Location` names it, and the document says so; a 200 `exists` creates nothing."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        path, body = (
            ("/v1/accounts", {"id": debit.replace(debit[4:], "1" * 32), "ledger": "USD", "code": 1})
            if kind == "account"
            else ("/v1/transfers", transfer(debit, credit))
        )
        created = client.post(path, json=body, headers=auth(keys.writer))
        again = client.post(path, json=body, headers=auth(keys.writer))
        read = client.get(created.headers.get("location", "/nowhere"), headers=auth(keys.reader))
        document = client.get("/openapi.json").json()
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{path}/{created.json()['id']}"
    assert read.status_code == 200 and read.json()["id"] == created.json()["id"]
    assert again.status_code == 200 and "location" not in again.headers
    headers = document["paths"][path]["post"]["responses"]["201"]["headers"]
    assert headers["Location"]["required"] is True


# ----------------------------------------------------------------------------- time bounds


def test_the_document_states_that_time_bounds_are_inclusive_as_they_are(
    database_url: str,
) -> None:
    """`since`, `until` and `as_of` were documented only as "ns since epoch": a client could
    not tell whether a transfer stamped exactly at a bound is in. It is, and the document
    (and each cursor parameter, with what it must be sent with) now says so."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        wallet = open_account(client, keys.writer, flags=["history"])["id"]
        other = open_account(client, keys.writer)["id"]
        made = [post_transfer(client, keys.writer, transfer(other, wallet, "5")) for _ in range(3)]
        stamp = made[1]["timestamp"]
        exact = _page(
            client, keys.reader, f"/v1/accounts/{wallet}/transfers", since=stamp, until=stamp
        )
        as_of = _page(client, keys.reader, f"/v1/accounts/{wallet}/balances", as_of=stamp)
        document = client.get("/openapi.json").json()["paths"]

    def described(path: str) -> dict[str, str]:
        parameters = document[path]["get"]["parameters"]
        return {p["name"]: p.get("description", "") for p in parameters}

    listed = described("/v1/accounts/{account_id}/transfers")
    assert [t["id"] for t in exact["items"]] == [made[1]["id"]]
    assert (as_of["transfer_id"], as_of["credits_posted"]) == (made[1]["id"], "10")
    assert "inclusive" in listed["since"] and "inclusive" in listed["until"]
    assert "inclusive" in described("/v1/accounts/{account_id}/balances")["as_of"]
    for path in ("/v1/accounts", "/v1/accounts/{account_id}/balance-history"):
        assert "invalid_cursor" in described(path)["cursor"], path
    assert "invalid_cursor" in listed["cursor"]

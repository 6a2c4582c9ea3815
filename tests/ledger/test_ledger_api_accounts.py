"""POST/GET /v1/accounts over HTTP, on SQLite and PostgreSQL: results as statuses and
problem codes, bad input refused before anything is written, tenants and modes isolated."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ledger.ledger_api_support import (
    account_id,
    api,
    assert_problem,
    auth,
    make_keys,
    open_account,
)

BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def test_opening_an_account_answers_201_then_200_for_the_same_fields(database_url: str) -> None:
    keys = make_keys(database_url)
    chosen = account_id()
    body = {
        "id": chosen,
        "ledger": "USD",
        "code": 7,
        "flags": ["debits_must_not_exceed_credits", "history"],
        "owner_ref": "user-1",
        "user_data": "wallet",
    }
    with api(database_url) as client:
        created = client.post("/v1/accounts", json=body, headers=auth(keys.writer))
        again = client.post("/v1/accounts", json=body, headers=auth(keys.writer))
        fetched = client.get(f"/v1/accounts/{chosen}", headers=auth(keys.reader))
    assert created.status_code == 201
    account = created.json()
    assert account["id"] == chosen
    assert account["result"] == "ok"
    assert account["flags"] == ["debits_must_not_exceed_credits", "history"]
    assert (account["ledger"], account["code"], account["status"]) == ("USD", 7, "active")
    assert (account["owner_ref"], account["user_data"]) == ("user-1", "wallet")
    assert all(account[name] == "0" for name in BALANCES), "balances are decimal strings"
    assert isinstance(account["timestamp"], str) and int(account["timestamp"]) > 0
    assert again.status_code == 200
    assert again.json() == {**account, "result": "exists"}
    assert fetched.status_code == 200
    assert fetched.json() == {name: value for name, value in account.items() if name != "result"}


def test_an_account_without_an_id_gets_a_generated_one(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        first = open_account(client, keys.writer)
        second = open_account(client, keys.writer)
    assert first["id"].startswith("acc_") and len(first["id"]) == 36
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"ledger": "usd"}, 422, "ledger_invalid"),
        ({"code": 0}, 422, "code_must_not_be_zero"),
        ({"code": 65_536}, 422, "code_exceeds_maximum"),
        ({"user_data": "x" * 129}, 422, "user_data_too_long"),
        ({"owner_ref": "x" * 129}, 422, "user_data_too_long"),
        (
            {"flags": ["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"]},
            422,
            "flags_are_mutually_exclusive",
        ),
    ],
)
def test_a_refused_account_is_a_problem_named_by_the_ledgers_result(
    database_url: str, fields: dict[str, object], status: int, code: str
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        body = {"ledger": "USD", "code": 1, **fields}
        response = client.post("/v1/accounts", json=body, headers=auth(keys.writer))
        listed = client.get("/v1/accounts", headers=auth(keys.reader))
    assert_problem(response, status, code)
    assert listed.json()["items"] == [], "nothing was opened"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"owner_ref": "x" * 129}, ["owner_ref"]),
        ({"user_data": "x" * 129}, ["user_data"]),
        ({"owner_ref": "é" * 129, "user_data": "é" * 200}, ["owner_ref", "user_data"]),
    ],
)
def test_text_too_long_for_the_ledger_is_named_in_the_problem(
    database_url: str, fields: dict[str, object], named: list[str]
) -> None:
    """The ledger has one result, `user_data_too_long`, for both texts: an over-long
    `owner_ref` answered it with nothing saying `owner_ref` was the one."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        body = {"ledger": "USD", "code": 1, **fields}
        response = client.post("/v1/accounts", json=body, headers=auth(keys.writer))
    problem = assert_problem(response, 422, "user_data_too_long")
    assert (problem["fields"], problem["length_max"]) == (named, 128)
    for name in ("owner_ref", "user_data"):
        assert (name in problem["detail"]) is (name in named), problem["detail"]


def _text_bound(schema: dict[str, Any]) -> int:
    [text] = [option for option in schema["anyOf"] if option["type"] == "string"]
    bound: int = text["maxLength"]
    return bound


def test_the_document_states_the_bounds_the_ledger_keeps(database_url: str) -> None:
    """The document said `maxLength: 1024` for `owner_ref` and `user_data` and `maximum:
    2147483647` for `code`: a client built from it sent values the ledger refuses. At the
    documented bounds an account opens; one past them is refused with the ledger's result,
    as before (not `validation_failed`)."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
        properties = document["components"]["schemas"]["AccountCreateRequest"]["properties"]
        code = properties["code"]
        owner_ref, user_data = (
            _text_bound(properties["owner_ref"]),
            _text_bound(properties["user_data"]),
        )

        def opened(**fields: Any) -> Any:
            body = {"ledger": "USD", "code": 1, **fields}
            return client.post("/v1/accounts", json=body, headers=auth(keys.writer))

        at_bounds = [
            opened(code=code["minimum"]),
            opened(code=code["maximum"], owner_ref="o" * owner_ref, user_data="u" * user_data),
        ]
        past = {
            "code_must_not_be_zero": opened(code=code["minimum"] - 1),
            "code_exceeds_maximum": opened(code=code["maximum"] + 1),
            "user_data_too_long": opened(owner_ref="o" * (owner_ref + 1)),
        }
        past_user_data = opened(user_data="u" * (user_data + 1))
    assert (code["type"], code["minimum"], code["maximum"]) == ("integer", 1, 65_535)
    assert owner_ref == user_data == 128
    for response in at_bounds:
        assert response.status_code == 201, response.text
    for result, response in past.items():
        assert_problem(response, 422, result)
    assert_problem(past_user_data, 422, "user_data_too_long")


def test_the_same_id_with_other_fields_is_a_409(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        account = open_account(client, keys.writer, id=account_id(), code=1)
        clash = {"id": account["id"], "ledger": "USD", "code": 2}
        response = client.post("/v1/accounts", json=clash, headers=auth(keys.writer))
        fetched = client.get(f"/v1/accounts/{account['id']}", headers=auth(keys.reader))
    assert_problem(response, 409, "exists_with_different_fields")
    assert fetched.json()["code"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"id": "acc_123", "ledger": "USD", "code": 1},
        {"id": "txf_" + "0" * 32, "ledger": "USD", "code": 1},
        {"id": "acc_" + "G" * 32, "ledger": "USD", "code": 1},
        {"ledger": "USD", "code": 1, "flags": ["no_such_flag"]},
        {"ledger": "USD", "code": 1, "flags": "history"},
        {"ledger": "USD", "code": -1},
        {"ledger": "USD", "code": "1x"},
        {"ledger": "USD", "code": "1"},
        {"ledger": "USD", "code": True},
        {"ledger": "USD"},
        {"ledger": "USD", "code": 1, "unexpected": True},
        {"ledger": "", "code": 1},
        {"ledger": "USD", "code": 1, "user_data": "x" * 2000},
        {"ledger": "USD", "code": 1, "owner_ref": "\x00"},
        {"ledger": "USD", "code": 1, "user_data": "\udfff"},
    ],
)
def test_malformed_accounts_are_refused_before_the_ledger(
    database_url: str, body: dict[str, object]
) -> None:
    keys = make_keys(database_url)
    # Encoded here, ASCII only: a lone surrogate must reach the server as its JSON escape.
    content = json.dumps(body).encode()
    headers = auth(keys.writer, **{"Content-Type": "application/json"})
    with api(database_url) as client:
        response = client.post("/v1/accounts", content=content, headers=headers)
        listed = client.get("/v1/accounts", headers=auth(keys.reader))
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"], "the invalid fields are listed"
    assert listed.json()["items"] == []


@pytest.mark.parametrize("path_id", ["acc_123", "txf_" + "a" * 32, "acc_" + "A" * 32, "nope"])
def test_a_malformed_account_id_in_the_path_is_a_400(database_url: str, path_id: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        response = client.get(f"/v1/accounts/{path_id}", headers=auth(keys.reader))
    assert_problem(response, 400, "invalid_id")


def test_accounts_list_a_page_at_a_time_in_opening_order(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        opened = [open_account(client, keys.writer, code=code)["id"] for code in range(1, 6)]
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/accounts", params=params, headers=auth(keys.reader)).json()
            seen += [account["id"] for account in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad_cursor = client.get("/v1/accounts?cursor=zzz", headers=auth(keys.reader))
        bad_limit = client.get("/v1/accounts?limit=0", headers=auth(keys.reader))
        too_many = client.get("/v1/accounts?limit=501", headers=auth(keys.reader))
    assert seen == opened
    assert_problem(bad_cursor, 400, "invalid_cursor")
    assert_problem(bad_limit, 422, "validation_failed")
    assert_problem(too_many, 422, "validation_failed")


def test_another_tenants_or_modes_account_is_not_found_like_a_missing_one(
    database_url: str,
) -> None:
    mine = make_keys(database_url, "Mine")
    theirs = make_keys(database_url, "Theirs")
    with api(database_url) as client:
        account = open_account(client, mine.writer)
        missing = account_id()
        responses = {
            "other tenant": client.get(
                f"/v1/accounts/{account['id']}", headers=auth(theirs.reader)
            ),
            "live mode": client.get(
                f"/v1/accounts/{account['id']}", headers=auth(mine.live_writer)
            ),
        }
        nonexistent = client.get(f"/v1/accounts/{missing}", headers=auth(theirs.reader))
        their_list = client.get("/v1/accounts", headers=auth(theirs.reader)).json()
        live_list = client.get("/v1/accounts", headers=auth(mine.live_writer)).json()
    expected = assert_problem(nonexistent, 404, "account_not_found")
    for case, response in responses.items():
        body = assert_problem(response, 404, "account_not_found")
        # The same document but for the id itself, which the caller sent.
        same = {name: value for name, value in body.items() if name not in ("detail", "instance")}
        assert same == {k: v for k, v in expected.items() if k not in ("detail", "instance")}, case
        assert body["detail"] == expected["detail"].replace(missing, account["id"])
    assert expected["detail"] == f"No account {missing}."  # the id as the caller wrote it
    assert their_list["items"] == [] and live_list["items"] == []


def test_a_live_key_opening_the_same_id_does_not_reach_the_test_account(
    database_url: str,
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        account = open_account(client, keys.writer, id=account_id())
        clash = {"id": account["id"], "ledger": "USD", "code": 1}
        live = client.post("/v1/accounts", json=clash, headers=auth(keys.live_writer))
        fetched = client.get(f"/v1/accounts/{account['id']}", headers=auth(keys.reader))
    # Ids are global, like TigerBeetle's: the live key learns only that the id is taken.
    assert_problem(live, 409, "exists_with_different_fields")
    assert fetched.status_code == 200


def test_accounts_need_a_key_with_the_right_scope(database_url: str) -> None:
    keys = make_keys(database_url)
    body = {"ledger": "USD", "code": 1}
    with api(database_url) as client:
        anonymous = client.post("/v1/accounts", json=body)
        reader = client.post("/v1/accounts", json=body, headers=auth(keys.reader))
        admin = client.get("/v1/accounts", headers=auth(keys.admin))
        listed = client.get("/v1/accounts", headers=auth(keys.reader))
    assert_problem(anonymous, 401, "unauthorized")
    assert_problem(reader, 403, "insufficient_scope")
    assert reader.json()["required_scopes"] == ["ledger:write"]
    assert_problem(admin, 403, "insufficient_scope")
    assert admin.json()["required_scopes"] == ["ledger:read"]
    assert listed.json()["items"] == []


def test_the_document_states_the_asset_codes_the_ledger_keeps(database_url: str) -> None:
    """The document said `maxLength: 64` for `ledger`; the ledger keeps 2-12 of A-Z and 0-9
    and answers anything else `ledger_invalid` (its result, not `validation_failed`)."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        opened = [
            client.post("/v1/accounts", json={"ledger": code, "code": 1}, headers=auth(keys.writer))
            for code in ("US", "ABCDEF123456", "U", "ABCDEF1234567", "usd", "US-D")
        ]
    for name in ("AccountCreateRequest", "TransferCreateRequest"):
        ledger = schemas[name]["properties"]["ledger"]
        ledger = next((item for item in ledger.get("anyOf", []) if "pattern" in item), ledger)
        assert ledger["pattern"] == "^[A-Z0-9]{2,12}$", name
    pattern = re.compile(schemas["AccountCreateRequest"]["properties"]["ledger"]["pattern"])
    for response, code in zip(
        opened, ("US", "ABCDEF123456", "U", "ABCDEF1234567", "usd", "US-D"), strict=True
    ):
        if pattern.fullmatch(code):
            assert response.status_code == 201, (code, response.text)
        else:
            assert_problem(response, 422, "ledger_invalid")

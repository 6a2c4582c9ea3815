"""POST /v1/transfers, POST /v1/transfers/batch and GET /v1/transfers/{id} over HTTP, on
SQLite and PostgreSQL: results as statuses and problem codes (never a 5xx for an expected
result), 128-bit amounts as strings, bad input refused with nothing moved."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billfold.ledger.types import AMOUNT_MAX, BATCH_SIZE_MAX
from ledger.ledger_api_support import (
    account_id,
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


def _pair(client: Any, key: str, **debit_fields: Any) -> tuple[str, str]:
    debit = open_account(client, key, **debit_fields)["id"]
    credit = open_account(client, key)["id"]
    return debit, credit


def test_a_transfer_is_201_then_200_and_reads_back_the_same(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        body = transfer(debit, credit, "250", code=9, user_data="order 1")
        created = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        again = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        fetched = client.get(f"/v1/transfers/{body['id']}", headers=auth(keys.reader))
        credited = balances(client, keys.reader, credit)
        debited = balances(client, keys.reader, debit)
    assert created.status_code == 201
    recorded = created.json()
    assert recorded["result"] == "ok"
    assert recorded["amount"] == "250"
    assert (recorded["debit_account_id"], recorded["credit_account_id"]) == (debit, credit)
    assert (recorded["code"], recorded["user_data"], recorded["flags"]) == (9, "order 1", [])
    assert (recorded["pending_id"], recorded["expires_at"]) == (None, None)
    assert again.status_code == 200
    assert again.json() == {**recorded, "result": "exists"}
    # The response is rebuilt from the request and the result; the read is the database's.
    assert fetched.json() == {name: value for name, value in recorded.items() if name != "result"}
    assert credited["credits_posted"] == "250" and debited["debits_posted"] == "250"


def test_amounts_up_to_2_to_the_127_minus_1_travel_as_strings(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        as_integer = post_transfer(client, keys.writer, transfer(debit, credit, 5))
        largest = post_transfer(client, keys.writer, transfer(credit, debit, str(AMOUNT_MAX)))
        overflow = client.post(
            "/v1/transfers", json=transfer(credit, debit, "1"), headers=auth(keys.writer)
        )
        debited = balances(client, keys.reader, debit)
    assert as_integer["amount"] == "5"
    assert largest["amount"] == str(AMOUNT_MAX)
    assert debited["credits_posted"] == str(AMOUNT_MAX)
    # debits_posted of `credit` would pass 2^127-1: a result, not a crash or a wrap.
    assert_problem(overflow, 422, "overflows_debits_posted")


@pytest.mark.parametrize(
    "amount",
    [-1, "-1", 2**127, str(2**127), "1.5", 1.5, "1e3", " 1", "", True, None, [], "0x10", "010"],
)
def test_bad_amounts_are_refused_and_nothing_moves(database_url: str, amount: object) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        body = transfer(debit, credit, 1)
        body["amount"] = amount
        if amount is None:
            body["flags"] = []  # an absent amount is valid only for balancing transfers
        response = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        after = balances(client, keys.reader, credit)
    if amount is None:
        assert_problem(response, 422, "amount_must_not_be_zero")
    else:
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["errors"][0]["loc"][:2] == ["body", "amount"]
    assert after["credits_posted"] == "0"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("limit", "exceeds_credits"),
        ("same_accounts", "accounts_must_be_different"),
        ("other_ledger", "ledgers_must_match"),
        ("zero", "amount_must_not_be_zero"),
        ("unknown_account", "account_not_found"),
        ("linked_alone", "linked_event_chain_open"),
        ("timeout_without_pending", "timeout_reserved_for_pending_transfer"),
        ("long_user_data", "user_data_too_long"),
        ("code_too_big", "code_exceeds_maximum"),
    ],
)
def test_a_refused_transfer_is_a_422_named_by_its_result(
    database_url: str, change: str, code: str
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer, flags=["debits_must_not_exceed_credits"])
        euro = open_account(client, keys.writer, ledger="EUR")["id"]
        body = transfer(debit, credit, "10")
        body |= {
            "limit": {},
            "same_accounts": {"credit_account_id": debit},
            "other_ledger": {"credit_account_id": euro},
            "zero": {"amount": 0},
            "unknown_account": {"credit_account_id": account_id()},
            "linked_alone": {"flags": ["linked"]},
            "timeout_without_pending": {"timeout_s": 5},
            "long_user_data": {"user_data": "x" * 129},
            "code_too_big": {"code": 65_536},
        }[change]
        response = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
        fetched = client.get(f"/v1/transfers/{body['id']}", headers=auth(keys.reader))
        after = balances(client, keys.reader, debit)
    assert_problem(response, 422, code)
    assert_problem(fetched, 404, "transfer_not_found")
    assert after["debits_posted"] == "0" and after["debits_pending"] == "0"


def test_the_same_transfer_id_with_other_fields_is_a_409(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        body = post_transfer(client, keys.writer, transfer(debit, credit, "10"))
        clash = transfer(debit, credit, "11", id=body["id"])
        response = client.post("/v1/transfers", json=clash, headers=auth(keys.writer))
        after = balances(client, keys.reader, credit)
    assert_problem(response, 409, "exists_with_different_fields")
    assert after["credits_posted"] == "10"


def test_a_hold_is_posted_in_part_with_fields_taken_from_it(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        hold = post_transfer(
            client, keys.writer, transfer(debit, credit, "100", flags=["pending"], timeout_s=60)
        )
        held = balances(client, keys.reader, credit)
        post = {"id": transfer_id(), "pending_id": hold["id"], "amount": "30"}
        post["flags"] = ["post_pending"]
        posted = client.post("/v1/transfers", json=post, headers=auth(keys.writer))
        again = client.post("/v1/transfers", json=post, headers=auth(keys.writer))
        void = {"id": transfer_id(), "pending_id": hold["id"], "flags": ["void_pending"]}
        voided = client.post("/v1/transfers", json=void, headers=auth(keys.writer))
        after = balances(client, keys.reader, credit)
    assert hold["flags"] == ["pending"]
    assert int(hold["expires_at"]) == int(hold["timestamp"]) + 60 * 1_000_000_000
    assert held["credits_pending"] == "100"
    assert posted.status_code == 201
    assert posted.json()["debit_account_id"] == debit, "taken from the pending transfer"
    assert posted.json()["pending_id"] == hold["id"]
    assert (posted.json()["amount"], posted.json()["ledger"]) == ("30", "USD")
    assert again.status_code == 200
    assert_problem(voided, 422, "pending_transfer_already_posted")
    assert (after["credits_pending"], after["credits_posted"]) == ("0", "30")


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "txf_123"},
        {"id": "acc_" + "0" * 32},
        {"debit_account_id": "txf_" + "0" * 32},
        {"pending_id": "acc_" + "0" * 32},
        {"flags": ["expiry"]},
        {"flags": ["teleport"]},
        {"code": -1},
        {"timeout_s": -1},
        {"code": "1"},
        {"code": True},
        {"flags": ["pending"], "timeout_s": "60"},
        {"flags": ["pending"], "timeout_s": True},
        {"ledger": "X" * 65},
        {"amount": "10", "amont": "10"},
        {"user_data": "a\x00b"},
        {"user_data": "\ud800"},
        {"ledger": "US\x00"},
    ],
)
def test_malformed_transfers_are_refused_before_the_ledger(
    database_url: str, fields: dict[str, object]
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        body = transfer(debit, credit, "10") | fields
        response = client.post(
            "/v1/transfers",
            content=json.dumps(body).encode(),  # ASCII: a lone surrogate travels escaped
            headers=auth(keys.writer, **{"Content-Type": "application/json"}),
        )
        missing_id = {key: value for key, value in transfer(debit, credit).items() if key != "id"}
        no_id = client.post("/v1/transfers", json=missing_id, headers=auth(keys.writer))
        not_json = client.post(
            "/v1/transfers",
            content=b"{not json",
            headers=auth(keys.writer, **{"Content-Type": "application/json"}),
        )
        after = balances(client, keys.reader, credit)
    for refused in (response, no_id, not_json):
        assert_problem(refused, 422, "validation_failed")
    assert after["credits_posted"] == "0"


def test_a_batch_answers_one_result_per_transfer_in_order(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer, flags=["debits_must_not_exceed_credits"])
        funding = open_account(client, keys.writer)["id"]
        batch = [
            transfer(funding, debit, "50"),
            transfer(debit, credit, "30"),
            transfer(debit, credit, "30"),  # only 20 left
            transfer(debit, credit, "5", flags=["linked"]),
            transfer(debit, debit, "5"),  # fails, and with it the linked one before
        ]
        response = client.post(
            "/v1/transfers/batch", json={"transfers": batch}, headers=auth(keys.writer)
        )
        again = client.post(
            "/v1/transfers/batch", json={"transfers": batch[:2]}, headers=auth(keys.writer)
        )
        after = balances(client, keys.reader, debit)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["result"] for r in results] == [
        "ok",
        "ok",
        "exceeds_credits",
        "linked_event_failed",
        "accounts_must_be_different",
    ]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["id"] for r in results] == [t["id"] for t in batch]
    assert results[1]["amount"] == "30" and results[1]["timestamp"].isdigit()
    assert results[2]["amount"] is None and results[2]["timestamp"] is None
    assert [r["result"] for r in again.json()["results"]] == ["exists", "exists"]
    assert (after["credits_posted"], after["debits_posted"]) == ("50", "30")


def test_the_document_states_the_transfer_bounds_the_ledger_keeps(database_url: str) -> None:
    """The document said `maxLength: 1024` for `user_data` and `maximum: 2147483647` for
    `code`, alone and in a batch. At the documented bounds a transfer is recorded; one past
    them is the ledger's result, per transfer in a batch (not a `validation_failed` of the
    whole batch) and as the problem's code for one transfer."""
    keys = make_keys(database_url)
    with api(database_url) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        properties = schemas["TransferCreateRequest"]["properties"]
        [code] = [option for option in properties["code"]["anyOf"] if option["type"] != "null"]
        [text] = [option for option in properties["user_data"]["anyOf"] if option["type"] != "null"]
        items = schemas["TransferBatchRequest"]["properties"]["transfers"]["items"]
        debit, credit = _pair(client, keys.writer)
        batch = [
            transfer(debit, credit, code=code["maximum"], user_data="u" * text["maxLength"]),
            transfer(debit, credit, code=code["minimum"]),
            transfer(debit, credit, code=code["maximum"] + 1),
            transfer(debit, credit, code=code["minimum"] - 1),
            transfer(debit, credit, user_data="u" * (text["maxLength"] + 1)),
        ]
        response = client.post(
            "/v1/transfers/batch", json={"transfers": batch}, headers=auth(keys.writer)
        )
        alone = transfer(debit, credit, code=code["maximum"] + 1)
        refused = client.post("/v1/transfers", json=alone, headers=auth(keys.writer))
        recorded = transfer(debit, credit, code=code["maximum"], user_data="u" * text["maxLength"])
        at_bounds = client.post("/v1/transfers", json=recorded, headers=auth(keys.writer))
    assert items == {"$ref": "#/components/schemas/TransferCreateRequest"}
    assert (code["type"], code["minimum"], code["maximum"]) == ("integer", 1, 65_535)
    assert (text["type"], text["maxLength"]) == ("string", 128)
    assert response.status_code == 200, response.text
    assert [r["result"] for r in response.json()["results"]] == [
        "ok",
        "ok",
        "code_exceeds_maximum",
        "code_must_not_be_zero",
        "user_data_too_long",
    ]
    assert_problem(refused, 422, "code_exceeds_maximum")
    assert at_bounds.status_code == 201, at_bounds.text


def test_a_batch_of_8190_of_the_largest_transfers_fits_and_8191_does_not(
    database_url: str,
) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        largest = transfer(
            debit,
            credit,
            "1",
            ledger="USD",
            code=65_535,
            flags=["pending", "balancing_debit", "balancing_credit"],
            timeout_s=2**32 - 1,
            user_data="\u00e9" * 128,  # escaped to \\u00e9 by json.dumps: 6 bytes each
        )
        batch = [{**largest, "id": transfer_id()} for _ in range(BATCH_SIZE_MAX)]
        body = json.dumps({"transfers": batch}).encode()
        fits = client.post(
            "/v1/transfers/batch",
            content=body,
            headers=auth(keys.writer, **{"Content-Type": "application/json"}),
        )
        over = client.post(
            "/v1/transfers/batch",
            json={"transfers": [*batch, {**largest, "id": transfer_id()}]},
            headers=auth(keys.writer),
        )
        empty = client.post(
            "/v1/transfers/batch", json={"transfers": []}, headers=auth(keys.writer)
        )
    assert len(body) > 1024 * 1024, "far more than the default body limit"
    assert fits.status_code == 200, fits.text[:500]
    assert len(fits.json()["results"]) == BATCH_SIZE_MAX
    assert_problem(over, 422, "validation_failed")
    assert_problem(empty, 422, "validation_failed")


def test_transfers_of_another_tenant_or_mode_are_out_of_reach(database_url: str) -> None:
    mine = make_keys(database_url, "Mine")
    theirs = make_keys(database_url, "Theirs")
    with api(database_url) as client:
        debit, credit = _pair(client, mine.writer)
        recorded = post_transfer(client, mine.writer, transfer(debit, credit, "10"))
        their_debit = open_account(client, theirs.writer)["id"]
        live_debit = open_account(client, mine.live_writer)["id"]
        reads = [
            client.get(f"/v1/transfers/{recorded['id']}", headers=auth(theirs.reader)),
            client.get(f"/v1/transfers/{recorded['id']}", headers=auth(mine.live_writer)),
        ]
        moves = [
            client.post(
                "/v1/transfers", json=transfer(their_debit, credit), headers=auth(theirs.writer)
            ),
            client.post(
                "/v1/transfers", json=transfer(live_debit, credit), headers=auth(mine.live_writer)
            ),
            client.post(
                "/v1/transfers", json=transfer(debit, their_debit), headers=auth(mine.writer)
            ),
        ]
        after = balances(client, mine.reader, credit)
    for response in reads:
        assert_problem(response, 404, "transfer_not_found")
    for response in moves:
        assert_problem(response, 422, "account_not_found")
    assert after["credits_posted"] == "10"


def test_transfers_need_a_key_with_the_right_scope(database_url: str) -> None:
    keys = make_keys(database_url)
    with api(database_url) as client:
        debit, credit = _pair(client, keys.writer)
        body = transfer(debit, credit)
        responses = {
            "anonymous": client.post("/v1/transfers", json=body),
            "reader": client.post("/v1/transfers", json=body, headers=auth(keys.reader)),
            "admin": client.post("/v1/transfers", json=body, headers=auth(keys.admin)),
            "batch reader": client.post(
                "/v1/transfers/batch", json={"transfers": [body]}, headers=auth(keys.reader)
            ),
        }
        after = balances(client, keys.reader, credit)
    assert_problem(responses.pop("anonymous"), 401, "unauthorized")
    for case, response in responses.items():
        assert response.status_code == 403, case
        assert response.json()["code"] == "insufficient_scope"
    assert after["credits_posted"] == "0"

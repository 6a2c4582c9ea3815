"""`Idempotency-Key` end to end on the ledger API, on SQLite and PostgreSQL: replays, 422 on
a different body, exactly one execution under concurrency, keys per credential, and nothing
written for a caller that is not authenticated."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.app import create_app
from billfold.kit.settings import Settings
from identity.identity_support import run_in_unit_of_work
from ledger.ledger_api_support import (
    API_SETTINGS,
    Keys,
    api,
    assert_problem,
    auth,
    balances,
    make_keys,
    open_account,
    transfer,
)

REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


def _idempotency_rows(database_url: str) -> int:
    async def count(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar())

    return run_in_unit_of_work(database_url, count)


def test_the_same_key_and_body_replays_the_first_response(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        body = transfer(debit, credit, "10")
        headers = auth(keys.writer, **{"Idempotency-Key": "pay-1"})
        first = client.post("/v1/transfers", json=body, headers=headers)
        second = client.post("/v1/transfers", json=body, headers=headers)
        after = balances(client, keys.reader, credit)
    assert first.status_code == second.status_code == 201
    assert REPLAYED not in first.headers
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert after["credits_posted"] == "10"


def test_a_refused_transfer_is_replayed_as_refused(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        debit = open_account(client, keys.writer, flags=["debits_must_not_exceed_credits"])["id"]
        credit = open_account(client, keys.writer)["id"]
        body = transfer(debit, credit, "10")
        headers = auth(keys.writer, **{"Idempotency-Key": "pay-2"})
        first = client.post("/v1/transfers", json=body, headers=headers)
        client.post("/v1/transfers", json=transfer(credit, debit, "100"), headers=auth(keys.writer))
        second = client.post("/v1/transfers", json=body, headers=headers)
        fresh = client.post("/v1/transfers", json=body, headers=auth(keys.writer))
    assert_problem(first, 422, "exceeds_credits")
    # The first answer stands for the key, although the funds are there now.
    assert (second.status_code, second.headers[REPLAYED]) == (422, "true")
    assert second.content == first.content
    assert fresh.status_code == 201, "without the key, the transfer id alone decides"


def test_the_same_key_with_a_different_body_is_a_422(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        headers = auth(keys.writer, **{"Idempotency-Key": "pay-3"})
        first = client.post("/v1/transfers", json=transfer(debit, credit, "10"), headers=headers)
        reused = client.post("/v1/transfers", json=transfer(debit, credit, "99"), headers=headers)
        after = balances(client, keys.reader, credit)
    assert first.status_code == 201
    assert_problem(reused, 422, "idempotency_key_reused")
    assert after["credits_posted"] == "10"


def test_a_body_sent_again_as_json_is_another_request(database_url: str, keys: Keys) -> None:
    """The media type is part of the request: a body first sent as text/plain (415) and
    then, unchanged, as JSON under the same key is refused as another request, where the
    415 used to be replayed for the key's 24 hours."""
    body = json.dumps({"ledger": "USD", "code": 1})
    with api(database_url) as client:
        first = client.post(
            "/v1/accounts",
            content=body,
            headers=auth(keys.writer, **{"Idempotency-Key": "k1", "Content-Type": "text/plain"}),
        )
        assert_problem(first, 415, "unsupported_media_type")
        again = client.post(
            "/v1/accounts",
            content=body,
            headers=auth(keys.writer, **{"Idempotency-Key": "k1", "Content-Type": "text/plain"}),
        )
        assert again.headers[REPLAYED] == "true"
        as_json = client.post(
            "/v1/accounts",
            content=body,
            headers=auth(
                keys.writer,
                **{"Idempotency-Key": "k1", "Content-Type": "Application/JSON; charset=utf-8"},
            ),
        )
        assert_problem(as_json, 422, "idempotency_key_reused")
        fresh = client.post(
            "/v1/accounts",
            content=body,
            headers=auth(
                keys.writer, **{"Idempotency-Key": "k2", "Content-Type": "application/json"}
            ),
        )
        assert fresh.status_code == 201, fresh.text


def test_keys_belong_to_one_credential(database_url: str, keys: Keys) -> None:
    other = make_keys(database_url, "Other")
    body = {"ledger": "USD", "code": 1}
    with api(database_url) as client:
        mine = client.post(
            "/v1/accounts", json=body, headers=auth(keys.writer, **{"Idempotency-Key": "k"})
        )
        theirs = client.post(
            "/v1/accounts", json=body, headers=auth(other.writer, **{"Idempotency-Key": "k"})
        )
        live = client.post(
            "/v1/accounts", json=body, headers=auth(keys.live_writer, **{"Idempotency-Key": "k"})
        )
    assert {mine.status_code, theirs.status_code, live.status_code} == {201}
    assert REPLAYED not in theirs.headers and REPLAYED not in live.headers
    assert len({mine.json()["id"], theirs.json()["id"], live.json()["id"]}) == 3


def test_a_caller_that_is_not_authenticated_writes_no_key(database_url: str, keys: Keys) -> None:
    body = {"ledger": "USD", "code": 1}
    before = _idempotency_rows(database_url)
    with api(database_url) as client:
        refused = [
            client.post("/v1/accounts", json=body, headers={"Idempotency-Key": "a"}),
            client.post(
                "/v1/accounts",
                json=body,
                headers={"Authorization": "Bearer bf_test_nope", "Idempotency-Key": "b"},
            ),
            client.post(
                "/v1/accounts",
                json=body,
                headers=auth(keys.writer[:-2] + "xx", **{"Idempotency-Key": "c"}),
            ),
        ]
        malformed = client.post(
            "/v1/accounts", json=body, headers=auth(keys.writer, **{"Idempotency-Key": ""})
        )
    for response in refused:
        assert_problem(response, 401, "unauthorized")
    assert_problem(malformed, 400, "idempotency_key_invalid")
    if not database_url.startswith("postgresql"):  # the PostgreSQL database is shared
        assert _idempotency_rows(database_url) == before


# ----------------------------------------------------------------------------- concurrency


@pytest.fixture
async def app(database_url: str, keys: Keys) -> AsyncIterator[FastAPI]:
    # After `keys`: a paused event loop may hold SQLite's write lock (an expiry sweep).
    application = create_app(Settings(database_url=database_url, **API_SETTINGS))
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.anyio
async def test_concurrent_requests_with_one_key_execute_once(app: FastAPI, keys: Keys) -> None:
    # An account without an id: each execution would open a new one, so the count of
    # accounts is the count of executions.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers = auth(keys.writer, **{"Idempotency-Key": "open-once"})
        body: dict[str, Any] = {"ledger": "USD", "code": 1}
        responses = await asyncio.gather(
            *(client.post("/v1/accounts", json=body, headers=headers) for _ in range(12))
        )
        replay = await client.post("/v1/accounts", json=body, headers=headers)
        listed = await client.get("/v1/accounts", headers=auth(keys.reader))
    statuses = sorted(response.status_code for response in responses)
    assert len(listed.json()["items"]) == 1, "exactly one execution"
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    executed = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(executed) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_request_in_progress"
        else:
            assert response.json()["id"] == executed[0].json()["id"]
    assert (replay.status_code, replay.headers[REPLAYED]) == (201, "true")
    assert replay.json() == executed[0].json()


@pytest.mark.anyio
async def test_a_bad_transfer_among_concurrent_ones_fails_alone(app: FastAPI, keys: Keys) -> None:
    # Concurrent transfers share a database transaction in the batching writer: a value the
    # database cannot store must be refused at the door, not fail everyone's batch.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        opened = [
            (await client.post("/v1/accounts", json={"ledger": "USD", "code": 1}, headers=h)).json()
            for h in (auth(keys.writer), auth(keys.writer))
        ]
        debit, credit = (account["id"] for account in opened)
        bodies = [transfer(debit, credit, "1") for _ in range(10)]
        bodies.insert(5, transfer(debit, credit, "1", user_data="nul \x00 here"))
        headers = auth(keys.writer, **{"Content-Type": "application/json"})
        responses = await asyncio.gather(
            *(
                client.post("/v1/transfers", content=json.dumps(body).encode(), headers=headers)
                for body in bodies
            )
        )
        after = (await client.get(f"/v1/accounts/{credit}", headers=auth(keys.reader))).json()
    assert [response.status_code for response in responses] == [201] * 5 + [422] + [201] * 5
    assert after["credits_posted"] == "10"

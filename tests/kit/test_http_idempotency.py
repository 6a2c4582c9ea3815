"""Idempotency keys over HTTP, on SQLite and PostgreSQL: replays, 422 on a different
request, 409 while running, exactly one execution under concurrency, nothing kept on 5xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from starlette.requests import HTTPConnection

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import PROBLEM_JSON, RateLimited, install_problem_handlers
from billfold.kit.http.caching import no_store
from billfold.kit.http.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    IdempotencyKeyInvalid,
    IdempotencyMiddleware,
    parse_idempotency_key,
)
from billfold.kit.http.idempotency_models import IdempotencyKey
from billfold.kit.http.idempotency_store import IdempotencyStore
from billfold.kit.http.limits import BodySizeLimitMiddleware
from billfold.kit.http.request_id import REQUEST_ID_HEADER, RequestIdMiddleware

pytestmark = pytest.mark.anyio

SCOPE_HEADER = "X-Test-Scope"


class TransferIn(BaseModel):
    amount: int


@dataclass
class Handlers:
    """What the test application's handlers did, and a gate to hold them mid-request."""

    executions: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def scope_from_header(connection: HTTPConnection) -> str | None:
    return connection.headers.get(SCOPE_HEADER) or None


def build_app(store: IdempotencyStore, handlers: Handlers) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/transfers", status_code=201)
    async def create_transfer(transfer: TransferIn, response: Response) -> dict[str, Any]:
        handlers.executions += 1
        response.headers["Location"] = f"/transfers/{handlers.executions}"
        response.headers["X-Not-Replayed"] = "1"
        return {"amount": transfer.amount, "execution": handlers.executions}

    @app.post("/slow", status_code=201)
    async def slow() -> dict[str, int]:
        handlers.executions += 1
        handlers.entered.set()
        await handlers.release.wait()
        return {"execution": handlers.executions}

    @app.post("/flaky")
    async def flaky() -> JSONResponse:
        handlers.executions += 1
        status = 503 if handlers.executions == 1 else 200
        return JSONResponse({"execution": handlers.executions}, status_code=status)

    @app.post("/crash")
    async def crash() -> None:
        handlers.executions += 1
        raise RuntimeError("the handler failed")

    @app.post("/limited")
    async def limited() -> None:
        handlers.executions += 1
        raise RateLimited("slow down")

    @app.post("/keys", status_code=201, dependencies=[Depends(no_store)])
    async def create_key() -> dict[str, Any]:
        handlers.executions += 1
        return {
            "id": f"key_{handlers.executions}",
            "secret": f"bf_test_secret{handlers.executions}",
        }

    @app.post("/refused")
    async def refused() -> Response:
        handlers.executions += 1
        headers = {"Allow": "GET, HEAD", "WWW-Authenticate": 'Bearer realm="billfold"'}
        return Response(status_code=405, headers=headers)

    @app.put("/settings/{name}")
    async def put_setting(name: str, transfer: TransferIn) -> dict[str, Any]:
        handlers.executions += 1
        return {"name": name, "amount": transfer.amount, "execution": handlers.executions}

    @app.patch("/settings/{name}")
    async def patch_setting(name: str, transfer: TransferIn) -> dict[str, Any]:
        handlers.executions += 1
        return {"name": name, "amount": transfer.amount, "execution": handlers.executions}

    @app.delete("/settings/{name}", status_code=204)
    async def delete_setting(name: str) -> None:
        handlers.executions += 1

    @app.post("/big")
    async def big() -> Response:
        handlers.executions += 1
        return Response(b"x" * 2048, media_type="application/octet-stream")

    app.add_middleware(IdempotencyMiddleware, store=store, scope_of=scope_from_header)
    app.add_middleware(BodySizeLimitMiddleware, body_max_bytes=1024)
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[IdempotencyStore]:
    engine = create_engine(parse_database_url(database_url), pool_size=8)
    try:
        yield IdempotencyStore(UnitOfWork(engine), response_body_max_bytes=1024)
    finally:
        await engine.dispose()


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def http(store: IdempotencyStore, handlers: Handlers) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(store, handlers), raise_app_exceptions=False)
    # PostgreSQL's database is shared by the session: each test is its own caller.
    headers = {SCOPE_HEADER: f"tenant-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://billfold.test", headers=headers
    ) as client:
        yield client


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {IDEMPOTENCY_KEY_HEADER: key, **headers}


def assert_problem(response: httpx.Response, *, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == code


async def test_a_replay_returns_the_stored_status_body_and_headers(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    first = await http.post("/transfers", json={"amount": 5}, headers=keyed("k1"))
    again = await http.post("/transfers", json={"amount": 5}, headers=keyed("k1"))
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["location"] == first.headers["location"] == "/transfers/1"
    assert again.headers[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in first.headers
    assert "x-not-replayed" not in again.headers
    assert again.headers[REQUEST_ID_HEADER] != first.headers[REQUEST_ID_HEADER]
    assert handlers.executions == 1


async def test_a_replay_keeps_the_headers_that_belong_to_its_status(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    """A 405 must say `Allow` and a 401 `WWW-Authenticate` (RFC 9110 sections 15.5.6 and
    11.6.1), a replayed one as much as the first."""
    first = await http.post("/refused", headers=keyed("refused-1"))
    again = await http.post("/refused", headers=keyed("refused-1"))
    assert first.status_code == again.status_code == 405
    assert again.headers[REPLAYED_HEADER] == "true"
    for name in ("allow", "www-authenticate"):
        assert again.headers[name] == first.headers[name]
    assert handlers.executions == 1


async def test_a_response_showing_a_secret_is_not_kept_nor_shown_again(
    http: httpx.AsyncClient, handlers: Handlers, database_url: str
) -> None:
    """`Cache-Control: no-store` (RFC 9111): the key records that the request ran, not its
    response; a retry gets a 409 saying so and the request does not run again."""
    first = await http.post("/keys", headers=keyed("secret-1"))
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    assert first.json()["secret"] == "bf_test_secret1"
    again = await http.post("/keys", headers=keyed("secret-1"))
    assert_problem(again, status=409, code="idempotency_response_withheld")
    assert again.json()["original_status"] == 201
    assert "bf_test_secret" not in again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    assert handlers.executions == 1
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            kept = (await session.scalars(select(IdempotencyKey.response_body))).all()
    finally:
        await engine.dispose()
    assert kept and not any(b"bf_test_secret" in (body or b"") for body in kept)


async def test_the_same_key_with_a_different_body_is_422(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    await http.post("/transfers", json={"amount": 5}, headers=keyed("k2"))
    response = await http.post("/transfers", json={"amount": 6}, headers=keyed("k2"))
    assert_problem(response, status=422, code="idempotency_key_reused")
    assert handlers.executions == 1


async def test_the_same_key_on_a_different_path_is_422(http: httpx.AsyncClient) -> None:
    await http.post("/transfers", json={"amount": 5}, headers=keyed("k3"))
    response = await http.post("/transfers?dry_run=1", json={"amount": 5}, headers=keyed("k3"))
    assert_problem(response, status=422, code="idempotency_key_reused")


async def test_the_same_key_while_the_first_runs_is_409(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    first = asyncio.create_task(http.post("/slow", headers=keyed("k4")))
    await asyncio.wait_for(handlers.entered.wait(), timeout=10)
    during = await http.post("/slow", headers=keyed("k4"))
    assert_problem(during, status=409, code="idempotency_request_in_progress")
    handlers.release.set()
    finished = await first
    after = await http.post("/slow", headers=keyed("k4"))
    assert finished.status_code == after.status_code == 201
    assert after.headers[REPLAYED_HEADER] == "true"
    assert handlers.executions == 1


async def test_concurrent_requests_with_one_key_execute_once(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    requests = [http.post("/transfers", json={"amount": 9}, headers=keyed("k5")) for _ in range(8)]
    responses = await asyncio.gather(*requests)
    assert handlers.executions == 1
    executed = [response for response in responses if REPLAYED_HEADER not in response.headers]
    answered = [response for response in responses if response.status_code == 201]
    assert len([response for response in executed if response.status_code == 201]) == 1
    assert {response.status_code for response in responses} <= {201, 409}
    assert len({response.content for response in answered}) == 1


async def test_a_server_error_is_not_kept_so_a_retry_executes(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    failed = await http.post("/flaky", headers=keyed("k6"))
    retried = await http.post("/flaky", headers=keyed("k6"))
    replayed = await http.post("/flaky", headers=keyed("k6"))
    assert (failed.status_code, retried.status_code, replayed.status_code) == (503, 200, 200)
    assert replayed.headers[REPLAYED_HEADER] == "true"
    assert handlers.executions == 2


@pytest.mark.parametrize("path", ["/crash", "/limited"])
async def test_a_crash_or_a_retryable_refusal_releases_the_key(
    http: httpx.AsyncClient, handlers: Handlers, path: str
) -> None:
    first = await http.post(path, headers=keyed("k7"))
    second = await http.post(path, headers=keyed("k7"))
    assert first.status_code == second.status_code
    assert first.status_code in {500, 429}
    assert REPLAYED_HEADER not in second.headers
    assert handlers.executions == 2


async def test_a_validation_failure_is_kept_like_any_answer(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    first = await http.post("/transfers", json={"amount": "many"}, headers=keyed("k8"))
    again = await http.post("/transfers", json={"amount": "many"}, headers=keyed("k8"))
    assert first.status_code == again.status_code == 422
    assert again.content == first.content
    assert again.headers["content-type"] == PROBLEM_JSON
    assert again.headers[REPLAYED_HEADER] == "true"


async def test_keys_are_scoped_per_caller(http: httpx.AsyncClient, handlers: Handlers) -> None:
    other = {SCOPE_HEADER: f"tenant-{uuid.uuid4().hex}"}
    mine = await http.post("/transfers", json={"amount": 1}, headers=keyed("shared"))
    theirs = await http.post("/transfers", json={"amount": 1}, headers=keyed("shared", **other))
    assert mine.status_code == theirs.status_code == 201
    assert REPLAYED_HEADER not in theirs.headers
    assert handlers.executions == 2


async def test_requests_without_a_key_or_a_scope_always_execute(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    await http.post("/transfers", json={"amount": 1})
    await http.post("/transfers", json={"amount": 1})
    unscoped = {SCOPE_HEADER: ""}
    await http.post("/transfers", json={"amount": 1}, headers=keyed("k9", **unscoped))
    await http.post("/transfers", json={"amount": 1}, headers=keyed("k9", **unscoped))
    assert handlers.executions == 4


async def test_a_response_too_large_to_keep_is_delivered_and_not_run_again(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    """Its key used to be released, so a retry ran the request a second time: "at most
    once" held only for responses under the size the store keeps."""
    first = await http.post("/big", headers=keyed("k10"))
    assert first.status_code == 200 and first.content == b"x" * 2048
    second = await http.post("/big", headers=keyed("k10"))
    assert_problem(second, status=409, code="idempotency_response_withheld")
    assert second.json()["original_status"] == 200
    assert "too large" in second.json()["detail"]
    assert handlers.executions == 1


async def test_a_body_over_the_limit_is_413_and_takes_no_key(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    too_large = await http.post("/transfers", content=b"x" * 2000, headers=keyed("k11"))
    assert_problem(too_large, status=413, code="payload_too_large")
    fitting = await http.post("/transfers", json={"amount": 1}, headers=keyed("k11"))
    assert fitting.status_code == 201


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_a_malformed_key_is_400(
    http: httpx.AsyncClient, handlers: Handlers, key: str
) -> None:
    response = await http.post("/transfers", json={"amount": 1}, headers=keyed(key))
    assert_problem(response, status=400, code="idempotency_key_invalid")
    assert handlers.executions == 0


async def test_a_structured_field_string_names_the_key_it_quotes(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    """draft-ietf-httpapi-idempotency-key-header: the field is an sf-string. Its quotes
    (and parameters) are not part of the key, so the draft's form and the bare one meet."""
    first = await http.post("/transfers", json={"amount": 1}, headers=keyed('"k12"'))
    bare = await http.post("/transfers", json={"amount": 1}, headers=keyed("k12"))
    with_parameter = await http.post("/transfers", json={"amount": 1}, headers=keyed('"k12";a=1'))
    other_body = await http.post("/transfers", json={"amount": 2}, headers=keyed('"k12"'))
    malformed = await http.post("/transfers", json={"amount": 1}, headers=keyed('"k12'))
    assert first.status_code == 201
    assert handlers.executions == 1
    for replay in (bare, with_parameter):
        assert (replay.status_code, replay.headers[REPLAYED_HEADER]) == (201, "true")
        assert replay.json() == first.json()
    assert_problem(other_body, status=422, code="idempotency_key_reused")
    assert_problem(malformed, status=400, code="idempotency_key_invalid")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_put_or_patch_with_a_key_replays_and_refuses_another_body(
    http: httpx.AsyncClient, handlers: Handlers, method: str
) -> None:
    first = await http.request(method, "/settings/a", json={"amount": 1}, headers=keyed("s1"))
    again = await http.request(method, "/settings/a", json={"amount": 1}, headers=keyed("s1"))
    other = await http.request(method, "/settings/a", json={"amount": 2}, headers=keyed("s1"))
    assert first.status_code == again.status_code == 200
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.json() == first.json() == {"name": "a", "amount": 1, "execution": 1}
    assert_problem(other, status=422, code="idempotency_key_reused")
    assert handlers.executions == 1


async def test_a_delete_with_a_key_replays_and_the_key_names_one_method(
    http: httpx.AsyncClient, handlers: Handlers
) -> None:
    first = await http.delete("/settings/a", headers=keyed("d1"))
    again = await http.delete("/settings/a", headers=keyed("d1"))
    put = await http.put("/settings/a", json={"amount": 1}, headers=keyed("d1"))
    assert first.status_code == again.status_code == 204
    assert again.headers[REPLAYED_HEADER] == "true"
    assert_problem(put, status=422, code="idempotency_key_reused")
    assert handlers.executions == 1


async def test_a_get_ignores_the_key(http: httpx.AsyncClient) -> None:
    response = await http.get("/transfers", headers=keyed(""))
    assert response.status_code == 405


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([b"a"], "a"),
        ([b"k" * 255], "k" * 255),
        ([b"with space~"], "with space~"),
        ([b'"8e03978e-40d5"'], "8e03978e-40d5"),
        ([b'"a\\"b\\\\c"'], 'a"b\\c'),
        ([b' "a" '], "a"),
        ([b'"a";p;q=1;r=-1.5;s="t";u=tok/en;v=:AA==:;w=?0'], "a"),
    ],
)
def test_parse_idempotency_key_accepts(values: list[bytes], expected: str | None) -> None:
    assert parse_idempotency_key(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        [b""],
        [b"k" * 256],
        [b"tab\there"],
        [b"bell\x07"],
        [b"\xc3\xa9"],
        [b"a", b"b"],
        [b'""'],
        [b'"open'],
        [b'"a"b"'],
        [b'"a\\x"'],
        [b'"a", "b"'],
        [b'"a";P=1'],
    ],
)
def test_parse_idempotency_key_refuses(values: list[bytes]) -> None:
    with pytest.raises(IdempotencyKeyInvalid) as raised:
        parse_idempotency_key(values)
    assert raised.value.code == "idempotency_key_invalid"

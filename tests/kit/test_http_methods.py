"""HEAD wherever GET is served, and a 405's `Allow` listing every method of its path
(`billfold.kit.http.methods`, RFC 9110 sections 9.3.2 and 15.5.6)."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.errors import install_problem_handlers
from billfold.kit.http.methods import install_methods
from billfold.kit.http.route_index import install_route_index
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key


class _Calls:
    def __init__(self) -> None:
        self.gets = 0
        self.ticks = 0
        self.stream_closed = False


def _small_app(calls: _Calls, *, index: bool) -> FastAPI:
    """`/things` served by two routers (GET by one, POST by the other), `/things/{id}` by
    GET only, `/feed` by an endless stream, `/orders` by POST only, `/orders/{id}` by PUT,
    PATCH and DELETE."""
    readers, writers = APIRouter(), APIRouter()

    @readers.get("/things")
    async def list_things() -> dict[str, list[str]]:
        calls.gets += 1
        return {"items": ["a", "b"]}

    @readers.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @readers.get("/feed")
    async def feed() -> StreamingResponse:
        async def forever() -> AsyncIterator[bytes]:
            try:
                while True:
                    calls.ticks += 1
                    yield b"data: tick\n\n"
                    await asyncio.sleep(0.01)
            finally:
                calls.stream_closed = True

        return StreamingResponse(forever(), media_type="text/event-stream")

    @writers.post("/things", status_code=201)
    async def create_thing() -> dict[str, str]:
        return {"id": "c"}

    @writers.post("/orders", status_code=201)
    async def create_order() -> dict[str, str]:
        return {"id": "o"}

    @writers.api_route("/orders/{order_id}", methods=["PUT", "PATCH", "DELETE"])
    async def change_order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(readers)
    app.include_router(writers)
    if index:
        install_route_index(app)
    install_methods(app.router)
    return app


@pytest.fixture(params=[False, True], ids=["full-table", "route-index"])
def client(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, _Calls]]:
    calls = _Calls()
    with TestClient(_small_app(calls, index=request.param)) as test_client:
        yield test_client, calls


def test_a_405_lists_every_method_of_its_path(client: tuple[TestClient, _Calls]) -> None:
    test_client, _ = client
    refused = test_client.delete("/things")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, POST"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 405
    assert test_client.patch("/things/7").headers["allow"] == "GET, HEAD"
    assert test_client.put("/orders").headers["allow"] == "POST"


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND", "BREW"])
def test_a_method_served_for_no_resource_is_501_on_any_path(
    client: tuple[TestClient, _Calls], method: str
) -> None:
    test_client, calls = client
    for path in ("/things", "/nowhere"):
        refused = test_client.request(method, path)
        assert refused.status_code == 501, (method, path)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "method_not_implemented"
    assert calls.gets == 0


def test_head_is_the_get_without_its_body(client: tuple[TestClient, _Calls]) -> None:
    test_client, calls = client
    got = test_client.get("/things")
    head = test_client.head("/things")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]
    assert calls.gets == 2  # the HEAD ran the GET: its checks and its status are the GET's
    assert test_client.head("/things/nope-7").status_code == 200
    assert test_client.head("/nowhere").status_code == 404


def test_head_of_a_stream_ends_at_once(client: tuple[TestClient, _Calls]) -> None:
    test_client, calls = client
    head = test_client.head("/feed")
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""
    time.sleep(0.2)
    assert calls.ticks == 1  # the stream stopped at its first part
    deadline = time.monotonic() + 5
    while not calls.stream_closed and time.monotonic() < deadline:
        gc.collect()  # nothing holds the abandoned stream: its loop closes it once collected
        time.sleep(0.01)
    assert calls.stream_closed


def test_head_where_no_get_is_served_is_a_405(client: tuple[TestClient, _Calls]) -> None:
    test_client, _ = client
    refused = test_client.head("/orders")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"


def _example(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def test_every_path_of_the_api_lists_its_documented_methods(tmp_path: Path) -> None:
    """For each path of Billfold's OpenAPI document, a method it does not serve is a 405
    whose Allow is exactly the methods the document gives every template matching that
    path (`/v1/transfers/batch` is also `/v1/transfers/{transfer_id}`), HEAD beside GET."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'methods.db'}"))
    with TestClient(app) as test_client:
        paths = test_client.get("/openapi.json").json()["paths"]
        assert len(paths) > 100
        for template in paths:
            path = _example(template)
            documented = {
                method.upper()
                for other, item in paths.items()
                if _pattern(other).match(path)
                for method in item
            }
            if "GET" in documented:
                documented.add("HEAD")
            unserved = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in documented)
            refused = test_client.request(unserved, path)
            assert refused.status_code == 405, (unserved, template)
            assert set(refused.headers["allow"].split(", ")) == documented, template


def test_head_of_an_api_resource_answers_as_its_get(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'head.db'}"
    with TestClient(create_app(Settings(database_url=database_url))) as test_client:
        tenant = bootstrap_tenant(database_url, name="Head")
        key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope)).secret
        anonymous = test_client.head("/v1/accounts")
        assert anonymous.status_code == 401
        assert anonymous.content == b""
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        authorized = {"Authorization": f"Bearer {key}"}
        got = test_client.get("/v1/accounts", headers=authorized)
        head = test_client.head("/v1/accounts", headers=authorized)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["x-request-id"] != got.headers["x-request-id"]

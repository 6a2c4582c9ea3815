"""The body size limit: 413 by declared length, 413 by counting a streamed body, never
reading past the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from billfold.kit.errors import PROBLEM_JSON, install_problem_handlers
from billfold.kit.http.limits import BodySizeLimitMiddleware

pytestmark = pytest.mark.anyio

LIMIT = 100


class Note(BaseModel):
    text: str


def build_app(calls: list[str]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        length = len(await request.body())
        calls.append("raw")  # only once the whole body was read
        return {"length": length}

    @app.post("/notes")
    async def notes(note: Note) -> dict[str, int]:
        # FastAPI reads the body before calling this, and turns a failed read into a 400.
        calls.append("notes")
        return {"length": len(note.text)}

    app.add_middleware(BodySizeLimitMiddleware, body_max_bytes=LIMIT)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://billfold.test")


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert body["body_max_bytes"] == LIMIT


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_body_at_the_limit_is_accepted() -> None:
    calls: list[str] = []
    async with client(build_app(calls)) as http:
        response = await http.post("/raw", content=b"x" * LIMIT)
    assert response.json() == {"length": LIMIT}


async def test_a_declared_length_over_the_limit_is_refused_before_the_handler() -> None:
    calls: list[str] = []
    async with client(build_app(calls)) as http:
        response = await http.post("/raw", content=b"x" * (LIMIT + 1))
    assert_too_large(response)
    assert calls == []


@pytest.mark.parametrize("path", ["/raw", "/notes"])
async def test_a_streamed_body_over_the_limit_is_refused(path: str) -> None:
    calls: list[str] = []
    async with client(build_app(calls)) as http:
        response = await http.post(path, content=chunks(count=50, size=10))
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert calls == []


async def test_a_streamed_body_within_the_limit_is_accepted() -> None:
    calls: list[str] = []
    async with client(build_app(calls)) as http:
        response = await http.post("/raw", content=chunks(count=10, size=10))
    assert response.json() == {"length": LIMIT}


class EndlessBody:
    """A client that would send forever; counts what the server pulled from it."""

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.pulled_bytes = 0

    async def receive(self) -> Message:
        self.pulled_bytes += self.chunk_size
        return {"type": "http.request", "body": b"x" * self.chunk_size, "more_body": True}


async def read_everything(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body", False):
        pass


async def call(app: Any, scope: Scope, receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": headers or [],
        "query_string": b"",
    }


async def test_reading_stops_at_the_first_chunk_past_the_limit() -> None:
    client_body = EndlessBody(chunk_size=7)
    middleware = BodySizeLimitMiddleware(read_everything, body_max_bytes=LIMIT)
    sent = await call(middleware, http_scope(), client_body.receive)
    assert sent[0]["status"] == 413
    assert LIMIT < client_body.pulled_bytes <= LIMIT + 7


@pytest.mark.parametrize("value", [b"ten", b"-1", b"1e3", b"9" * 20])
async def test_a_malformed_content_length_is_a_bad_request(value: bytes) -> None:
    middleware = BodySizeLimitMiddleware(read_everything, body_max_bytes=LIMIT)
    body = EndlessBody(chunk_size=1)
    sent = await call(middleware, http_scope([(b"content-length", value)]), body.receive)
    assert sent[0]["status"] == 400
    assert b"invalid_content_length" in sent[1]["body"]
    assert body.pulled_bytes == 0


async def test_differing_content_lengths_are_a_bad_request() -> None:
    middleware = BodySizeLimitMiddleware(read_everything, body_max_bytes=LIMIT)
    headers = [(b"content-length", b"5"), (b"content-length", b"6")]
    sent = await call(middleware, http_scope(headers), EndlessBody(chunk_size=1).receive)
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("limit", [0, 2**31])
def test_the_limit_itself_is_bounded(limit: int) -> None:
    with pytest.raises(ValueError, match="body_max_bytes"):
        BodySizeLimitMiddleware(read_everything, body_max_bytes=limit)

"""The request id: echoed when well formed, generated otherwise, on every response."""

from __future__ import annotations

import re

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request

from billfold.kit.errors import PROBLEM_JSON, NotFound, install_problem_handlers
from billfold.kit.http.request_id import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    choose_request_id,
    current_request_id,
)

pytestmark = pytest.mark.anyio

GENERATED = re.compile(r"[0-9a-f]{32}")


class HandlerCrashedError(RuntimeError):
    pass


def build_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/seen")
    async def seen(request: Request) -> dict[str, object]:
        return {
            "state": request.state.request_id,
            "context": current_request_id(),
            "logged": structlog.contextvars.get_contextvars().get("request_id"),
        }

    @app.get("/missing-account")
    async def missing_account() -> None:
        raise NotFound("No such account.")

    @app.get("/crash")
    async def crash() -> None:
        raise HandlerCrashedError("boom")

    app.add_middleware(RequestIdMiddleware)
    return app


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://billfold.test")


@pytest.mark.parametrize("incoming", ["abc", "req-1.2_3", "A" * 128, "0192f3a1c2d37b4e"])
async def test_a_well_formed_incoming_id_is_echoed(incoming: str) -> None:
    async with client() as http:
        response = await http.get("/seen", headers={REQUEST_ID_HEADER: incoming})
    assert response.headers[REQUEST_ID_HEADER] == incoming
    assert response.json() == {"state": incoming, "context": incoming, "logged": incoming}


async def test_an_id_is_generated_when_none_is_sent() -> None:
    async with client() as http:
        first = await http.get("/seen")
        second = await http.get("/seen")
    generated = first.headers[REQUEST_ID_HEADER]
    assert GENERATED.fullmatch(generated)
    assert first.json()["context"] == generated
    assert second.headers[REQUEST_ID_HEADER] != generated


@pytest.mark.parametrize(
    "malformed", ["", "A" * 129, "has space", "semi;colon", "new\tline", "ünicode", "a/b"]
)
async def test_a_malformed_incoming_id_is_replaced(malformed: str) -> None:
    async with client() as http:
        response = await http.get(
            "/seen", headers=[(REQUEST_ID_HEADER.encode(), malformed.encode())]
        )
    assert GENERATED.fullmatch(response.headers[REQUEST_ID_HEADER])


@pytest.mark.parametrize("path", ["/missing-account", "/no-such-route", "/crash"])
async def test_errors_carry_the_id_too(path: str) -> None:
    async with client() as http:
        response = await http.get(path, headers={REQUEST_ID_HEADER: "trace-me"})
    assert response.status_code in {404, 500}
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers[REQUEST_ID_HEADER] == "trace-me"


async def test_a_crash_is_a_problem_without_its_detail() -> None:
    async with client() as http:
        response = await http.get("/crash")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "boom" not in response.text


async def test_the_id_is_unbound_after_the_request() -> None:
    async with client() as http:
        await http.get("/seen", headers={REQUEST_ID_HEADER: "gone-after"})
    assert current_request_id() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()


def test_choose_request_id_accepts_only_the_safe_alphabet() -> None:
    assert choose_request_id(b"ok-1") == "ok-1"
    assert choose_request_id(b"\r\nX-Injected: 1") != "\r\nX-Injected: 1"
    assert GENERATED.fullmatch(choose_request_id(None))

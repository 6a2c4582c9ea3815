"""Every response to a request counted against its credential's rate limit says where the
caller stands (`RateLimit`, `RateLimit-Policy` and the older fields): a problem raised after
the count (403, 404, 422) and the idempotency layer's answers (a replay, a reused key) as
much as the route's own success."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from billfold.kit.auth import (
    CredentialRateLimit,
    Mode,
    Principal,
    admit_request,
    count_request,
    install_auth,
    install_rate_limit,
    require_scopes,
)
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import (
    PROBLEM_JSON,
    BearerTokenRejected,
    NotFound,
    install_problem_handlers,
)
from billfold.kit.http.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    IdempotencyMiddleware,
)
from billfold.kit.http.idempotency_store import IdempotencyStore
from billfold.kit.http.rate_limit import InProcessRateLimiter

pytestmark = pytest.mark.anyio

LIMIT = 20
FIELDS = ("ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining")


class ThingIn(BaseModel):
    size: int


def build_app(store: IdempotencyStore | None = None) -> FastAPI:
    principal = Principal(
        tenant_id=uuid.uuid4(),
        api_key_id=uuid.uuid4(),
        mode=Mode.TEST,
        scopes=frozenset({"ledger:read", "ledger:write"}),
    )

    async def authenticate(request: Request) -> Principal:
        if request.headers.get("authorization") != "Bearer good":
            raise BearerTokenRejected()
        return principal

    async def idempotency_scope(connection: HTTPConnection) -> str | None:
        return (await admit_request(Request(connection.scope))).api_key_id.hex

    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, authenticator=authenticate)
    install_rate_limit(
        app, CredentialRateLimit(limiter=InProcessRateLimiter(), limit=LIMIT, window_s=60)
    )

    @app.get("/things/{thing_id}", dependencies=[Depends(require_scopes("ledger:read"))])
    async def get_thing(thing_id: str) -> None:
        raise NotFound(f"No thing {thing_id}.")

    @app.post("/things", status_code=201, dependencies=[Depends(require_scopes("ledger:write"))])
    async def create_thing(thing: ThingIn) -> dict[str, int]:
        return {"size": thing.size}

    @app.delete("/things", dependencies=[Depends(require_scopes("tenant:admin"))])
    async def delete_things() -> None:
        return None

    async def signed_in_user(request: Request, response: Response) -> None:
        await count_request(request, key="user:u1", response=response)

    @app.get("/mine/{thing_id}", dependencies=[Depends(signed_in_user)])
    async def get_my_thing(thing_id: str) -> None:
        raise NotFound(f"No thing {thing_id}.")

    if store is not None:
        app.add_middleware(IdempotencyMiddleware, store=store, scope_of=idempotency_scope)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://billfold.test",
        headers={"Authorization": "Bearer good"},
    )


def remaining(response: httpx.Response) -> int:
    for name in FIELDS:
        assert name in response.headers, (response.status_code, name)
    assert response.headers["ratelimit-policy"].endswith(f";q={LIMIT};w=60")
    return int(response.headers["ratelimit-remaining"])


async def test_a_problem_after_the_count_carries_the_fields() -> None:
    async with client(build_app()) as http:
        created = await http.post("/things", json={"size": 1})
        missing = await http.get("/things/nope")
        forbidden = await http.delete("/things")
        invalid = await http.post("/things", json={"size": "big"})
        unauthenticated = await http.get("/things/nope", headers={"Authorization": "Bearer bad"})
    assert [r.status_code for r in (created, missing, forbidden, invalid)] == [201, 404, 403, 422]
    assert {r.headers["content-type"] for r in (missing, forbidden, invalid)} == {PROBLEM_JSON}
    assert [remaining(r) for r in (created, missing, forbidden, invalid)] == [
        LIMIT - 1,
        LIMIT - 2,
        LIMIT - 3,
        LIMIT - 4,
    ]
    assert "www-authenticate" in forbidden.headers  # the problem's own headers are kept
    # Nothing counted a request that was never authenticated.
    assert unauthenticated.status_code == 401
    assert "ratelimit" not in unauthenticated.headers


async def test_an_end_users_problem_carries_the_fields_of_its_count() -> None:
    async with client(build_app()) as http:
        first, second = [await http.get("/mine/nope") for _ in range(2)]
    assert first.status_code == second.status_code == 404
    assert first.headers["ratelimit"].startswith('"user";r=')
    assert [remaining(r) for r in (first, second)] == [LIMIT - 1, LIMIT - 2]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[IdempotencyStore]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        yield IdempotencyStore(UnitOfWork(engine))
    finally:
        await engine.dispose()


async def test_the_idempotency_layers_answers_carry_the_fields(store: IdempotencyStore) -> None:
    key = {IDEMPOTENCY_KEY_HEADER: f"fields-{uuid.uuid4().hex}"}
    async with client(build_app(store)) as http:
        first = await http.post("/things", json={"size": 1}, headers=key)
        replayed = await http.post("/things", json={"size": 1}, headers=key)
        reused = await http.post("/things", json={"size": 2}, headers=key)
    assert (first.status_code, replayed.status_code, reused.status_code) == (201, 201, 422)
    assert replayed.headers[REPLAYED_HEADER] == "true"
    assert reused.json()["code"] == "idempotency_key_reused"
    assert [remaining(r) for r in (first, replayed, reused)] == [LIMIT - 1, LIMIT - 2, LIMIT - 3]

"""The Redis rate limiter against the local Redis (`BILLFOLD_TEST_REDIS_URL`, default
redis://127.0.0.1:6379/0): the limit holds across concurrent callers, the request over it
gets 429 with Retry-After. Skipped when Redis is unreachable, except under `CI=true`.

The `redis` package is not a dependency yet, so the tests speak RESP through a client of a
few lines that has the one method the limiter uses (`eval`, as `redis.asyncio.Redis`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from billfold.kit.errors import install_problem_handlers
from billfold.kit.http.rate_limit import RateLimiter, rate_limit_dependency
from billfold.kit.http.rate_limit_redis import RateLimiterUnavailable, RedisRateLimiter

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("BILLFOLD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY_DEPTH_MAX = 4


class RespClient:
    """Just enough RESP2 for EVAL: one connection, one command at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str) -> RespClient:
        parts = urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), 2
        )
        client = cls(reader, writer)
        await client.execute("SELECT", (parts.path or "/0").lstrip("/") or "0")
        return client

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    async def eval(self, script: str, numkeys: int, *keys_and_args: str) -> Any:
        return await self.execute("EVAL", script, str(numkeys), *keys_and_args)

    async def execute(self, *parts: str) -> Any:
        encoded = [part.encode() for part in parts]
        frame = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
        )
        async with self._lock:
            self._writer.write(frame)
            await self._writer.drain()
            return await self._reply(depth=0)

    async def _reply(self, *, depth: int) -> Any:
        assert depth <= REPLY_DEPTH_MAX
        line = (await self._reader.readline()).rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else (await self._reader.readexactly(length + 2))[:-2]
        assert kind == b"*", f"unexpected RESP reply {line!r}"
        return [await self._reply(depth=depth + 1) for _ in range(int(rest))]


@pytest.fixture
async def redis() -> AsyncIterator[RespClient]:
    try:
        client = await RespClient.connect(REDIS_URL)
    except (OSError, TimeoutError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true and is unreachable: {error}")
        pytest.skip(f"Redis unreachable: {error}")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}"


async def test_the_request_after_the_limit_is_refused(redis: RespClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key_prefix="billfold-test:")
    decisions = [await limiter.check(key, limit=3, window_s=30) for _ in range(4)]
    assert [decision.allowed for decision in decisions] == [True, True, True, False]
    assert [decision.remaining for decision in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert 29 < refused.retry_after_s <= 30
    assert refused.limit == 3


async def test_a_slot_frees_when_the_window_slides(redis: RespClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key_prefix="billfold-test:")
    assert (await limiter.check(key, limit=1, window_s=0.2)).allowed
    assert not (await limiter.check(key, limit=1, window_s=0.2)).allowed
    await asyncio.sleep(0.25)
    assert (await limiter.check(key, limit=1, window_s=0.2)).allowed


async def test_concurrent_callers_share_one_limit(key: str) -> None:
    # One connection each, so the checks really race inside Redis.
    clients = [await RespClient.connect(REDIS_URL) for _ in range(6)]
    try:
        limiters = [RedisRateLimiter(client, key_prefix="billfold-test:") for client in clients]
        checks = [
            limiter.check(key, limit=5, window_s=30) for limiter in limiters for _ in range(4)
        ]
        decisions = await asyncio.gather(*checks)
    finally:
        for client in clients:
            await client.close()
    assert sum(decision.allowed for decision in decisions) == 5


async def test_keys_expire_from_redis(redis: RespClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key_prefix="billfold-test:")
    await limiter.check(key, limit=2, window_s=5)
    ttl_ms = await redis.execute("PTTL", f"billfold-test:{key}")
    assert 0 < ttl_ms <= 5000


class SilentRedis:
    """A Redis that never answers."""

    async def eval(self, script: str, numkeys: int, *keys_and_args: str) -> Any:
        await asyncio.sleep(3600)


async def test_a_silent_redis_is_503_not_a_hang() -> None:
    limiter = RedisRateLimiter(SilentRedis(), timeout_s=0.05)
    with pytest.raises(RateLimiterUnavailable):
        await limiter.check("k", limit=1, window_s=1)


async def test_the_request_over_the_limit_gets_429_with_retry_after(
    redis: RespClient, key: str
) -> None:
    limiter: RateLimiter = RedisRateLimiter(redis, key_prefix="billfold-test:")

    async def caller(request: Request) -> str:
        return key

    app = FastAPI()
    install_problem_handlers(app)

    @app.post(
        "/transfers",
        dependencies=[Depends(rate_limit_dependency(limiter, key_of=caller, limit=2, window_s=60))],
    )
    async def create_transfer() -> dict[str, str]:
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as http:
        statuses = [(await http.post("/transfers")).status_code for _ in range(2)]
        refused = await http.post("/transfers")
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 59 <= int(refused.headers["Retry-After"]) <= 60

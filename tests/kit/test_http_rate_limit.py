"""The in-process rate limiter and the 429 it causes: never more than the limit in any
window, exactly the limit when requests keep coming, bounded memory."""

from __future__ import annotations

import asyncio
import re
from bisect import bisect_right

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.kit.clock import ManualClock
from billfold.kit.errors import PROBLEM_JSON, install_problem_handlers
from billfold.kit.http.rate_limit import (
    RATE_LIMIT_KEY_LENGTH_MAX,
    RATE_LIMIT_MAX,
    Decision,
    InProcessRateLimiter,
    LimiterProvider,
    RateLimiter,
    check_policy,
    rate_limit_dependency,
    rate_limit_headers,
)

NANOSECONDS_PER_SECOND = 1_000_000_000


def check(limiter: InProcessRateLimiter, key: str = "k", limit: int = 3) -> Decision:
    return limiter.check_now(key, limit=limit, window_s=10)


def test_the_request_after_the_limit_is_refused_until_a_slot_frees() -> None:
    clock = ManualClock()
    limiter = InProcessRateLimiter(clock=clock)
    decisions = [check(limiter) for _ in range(3)]
    assert [decision.remaining for decision in decisions] == [2, 1, 0]
    assert all(decision.allowed for decision in decisions)
    clock.advance(seconds=4)
    refused = check(limiter)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after_s == pytest.approx(6)
    clock.advance(seconds=6)
    assert check(limiter).allowed


def test_the_window_slides_rather_than_resetting() -> None:
    clock = ManualClock()
    limiter = InProcessRateLimiter(clock=clock)
    check(limiter)
    clock.advance(seconds=9)
    check(limiter)
    check(limiter)
    clock.advance(seconds=1)
    # The first request left the window; the two from second 9 are still in it.
    assert check(limiter).allowed
    assert not check(limiter).allowed


def test_keys_are_counted_apart() -> None:
    limiter = InProcessRateLimiter(clock=ManualClock())
    assert check(limiter, key="a", limit=1).allowed
    assert not check(limiter, key="a", limit=1).allowed
    assert check(limiter, key="b", limit=1).allowed


def test_memory_is_bounded_by_keys_max() -> None:
    limiter = InProcessRateLimiter(clock=ManualClock(), keys_max=3)
    for index in range(10):
        check(limiter, key=f"caller-{index}")
    assert len(limiter) == 3


def test_idle_keys_are_swept_as_checks_go_by() -> None:
    clock = ManualClock()
    limiter = InProcessRateLimiter(clock=clock)
    for index in range(5):
        check(limiter, key=f"caller-{index}")
    clock.advance(seconds=10)
    check(limiter, key="late")
    assert len(limiter) == 1


@pytest.mark.parametrize(
    ("key", "limit", "window_s"),
    [
        ("", 1, 1.0),
        ("k" * (RATE_LIMIT_KEY_LENGTH_MAX + 1), 1, 1.0),
        ("k", 0, 1.0),
        ("k", RATE_LIMIT_MAX + 1, 1.0),
        ("k", 1, 0.0),
        ("k", 1, 86_401.0),
    ],
)
def test_keys_and_policies_are_bounded(key: str, limit: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        InProcessRateLimiter().check_now(key, limit=limit, window_s=window_s)


def test_it_is_a_rate_limiter() -> None:
    assert isinstance(InProcessRateLimiter(), RateLimiter)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    window_ms=st.integers(min_value=1, max_value=50),
    gaps_ms=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=80),
)
def test_never_more_than_the_limit_in_any_window_and_never_fewer(
    limit: int, window_ms: int, gaps_ms: list[int]
) -> None:
    clock = ManualClock(start_ns=0)
    limiter = InProcessRateLimiter(clock=clock)
    window_ns = window_ms * 1_000_000
    allowed_at: list[int] = []
    for gap_ms in gaps_ms:
        clock.advance(nanoseconds=gap_ms * 1_000_000)
        now = clock.now_ns()
        # Allowed requests in the window ending now: (now - window, now].
        in_window = len(allowed_at) - bisect_right(allowed_at, now - window_ns)
        decision = limiter.check_now("k", limit=limit, window_s=window_ms / 1000)
        assert decision.allowed == (in_window < limit)
        if decision.allowed:
            allowed_at.append(now)
            assert decision.remaining == limit - in_window - 1
        else:
            assert 0 < decision.retry_after_s <= window_ms / 1000
    for index, start in enumerate(allowed_at):
        # Every interval [start, start + window) holds at most `limit` allowed requests.
        assert bisect_right(allowed_at, start + window_ns - 1) - index <= limit


async def caller_header(request: Request) -> str | None:
    return request.headers.get("X-Caller")


def build_app(limiter: RateLimiter | LimiterProvider) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    per_caller = rate_limit_dependency(limiter, key_of=caller_header, limit=2, window_s=30)

    @app.get("/balances", dependencies=[Depends(per_caller)])
    async def balances() -> dict[str, int]:
        return {"balance": 1}

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://billfold.test")


# draft-ietf-httpapi-ratelimit-headers-10: each field is a Structured Field List (RFC 8941)
# whose items are a String naming the policy, with Integer parameters.
_SF_ITEM = re.compile(r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"(;[a-z*][a-z0-9_.*-]*=[0-9]{1,15})+')


@pytest.mark.anyio
async def test_the_request_over_the_limit_gets_429_with_retry_after() -> None:
    clock = ManualClock()
    async with client(build_app(InProcessRateLimiter(clock=clock))) as http:
        first = await http.get("/balances", headers={"X-Caller": "key_1"})
        clock.advance(seconds=10.5)
        second = await http.get("/balances", headers={"X-Caller": "key_1"})
        refused = await http.get("/balances", headers={"X-Caller": "key_1"})
        other = await http.get("/balances", headers={"X-Caller": "key_2"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 200, 200)
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert second.headers["RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["code"] == "rate_limited"
    # 19.5 s until the first request leaves the window, rounded up to whole seconds.
    assert refused.headers["Retry-After"] == "20"
    assert refused.json()["retry_after_s"] == 20
    assert refused.headers["RateLimit-Remaining"] == "0"
    # The draft's current fields, on the 429 too.
    assert first.headers["RateLimit-Policy"] == '"default";q=2;w=30'
    assert first.headers["RateLimit"] == '"default";r=1;t=30'
    assert second.headers["RateLimit"] == '"default";r=0;t=20'
    assert refused.headers["RateLimit"] == '"default";r=0;t=20'
    assert refused.headers["RateLimit-Policy"] == '"default";q=2;w=30'
    for response in (first, second, refused):
        for name in ("RateLimit", "RateLimit-Policy"):
            assert _SF_ITEM.fullmatch(response.headers[name]), response.headers[name]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("credential:0af1", "credential"),
        ("user:usr_1", "user"),
        ("sign-in:203.0.113.7", "sign-in"),
        ("203.0.113.7", "default"),  # no kind: the caller is never named
        ('a"b:x', "default"),
        ("Kind:x", "default"),
        (":x", "default"),
        ("k" * 40 + ":x", "default"),
    ],
)
@pytest.mark.anyio
async def test_a_policy_is_named_by_its_keys_kind_only(key: str, name: str) -> None:
    decision = await check_policy(InProcessRateLimiter(), key, limit=5, window_s=60)
    headers = rate_limit_headers(decision)
    assert headers["RateLimit"] == f'"{name}";r=4;t=60'
    assert headers["RateLimit-Policy"] == f'"{name}";q=5;w=60'


@pytest.mark.anyio
async def test_a_request_without_a_key_is_not_limited() -> None:
    limiter = InProcessRateLimiter(clock=ManualClock())
    # The limiter may also be looked up per request (one built at startup, on app.state).
    async with client(build_app(lambda request: limiter)) as http:
        responses = await asyncio.gather(*(http.get("/balances") for _ in range(5)))
    assert {response.status_code for response in responses} == {200}
    assert "RateLimit-Limit" not in responses[0].headers


def test_a_policy_out_of_bounds_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="limit"):
        rate_limit_dependency(InProcessRateLimiter(), key_of=caller_header, limit=0, window_s=1)

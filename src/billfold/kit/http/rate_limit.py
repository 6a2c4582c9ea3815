"""Rate limits: a `RateLimiter` protocol, the in-process limiter, and the 429 helpers.

Every limiter counts a sliding window: a request is allowed when fewer than `limit`
requests were allowed in the `window_s` seconds before it, so no interval of `window_s`
ever holds more than `limit` allowed requests (a fixed window allows twice that across
its boundary). `rate_limit_redis.RedisRateLimiter` does the same across processes.

A refusal is 429 problem+json, code `rate_limited`, with `Retry-After` (whole seconds,
RFC 9110 section 10.2.3). Counted responses, refusals included, carry the limit's state in
the fields of draft-ietf-httpapi-ratelimit-headers (revision 10): `RateLimit-Policy:
"credential";q=600;w=60` (the policy named by its key's kind, its quota and window) and
`RateLimit: "credential";r=599;t=1` (what remains, and the seconds until a slot frees); and
in the older revisions' fields, which clients still read: `RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response

from billfold.kit.auth import CredentialRateLimit
from billfold.kit.clock import Clock
from billfold.kit.errors import RateLimited

__all__ = [
    "RATE_LIMIT_KEYS_MAX_DEFAULT",
    "RATE_LIMIT_KEY_LENGTH_MAX",
    "RATE_LIMIT_MAX",
    "RATE_LIMIT_WINDOW_S_MAX",
    "Decision",
    "InProcessRateLimiter",
    "KeyResolver",
    "LimiterProvider",
    "MonotonicClock",
    "RateLimitExceeded",
    "RateLimiter",
    "check_policy",
    "enforce_rate_limit",
    "rate_limit_dependency",
    "rate_limit_headers",
    "throttle_sign_in",
    "validate_rate_limit",
]

RATE_LIMIT_KEY_LENGTH_MAX = 512
RATE_LIMIT_MAX = 10_000
"""Most requests one window may allow; the in-process limiter keeps one timestamp each."""
RATE_LIMIT_WINDOW_S_MAX = 86_400
RATE_LIMIT_KEYS_MAX_DEFAULT = 10_000
NANOSECONDS_PER_SECOND = 1_000_000_000
# Idle keys dropped per check: bounded work per request, and memory returns over time.
_IDLE_SWEEP_MAX = 8


@dataclass(frozen=True, slots=True)
class Decision:
    """A limiter's answer for one request."""

    allowed: bool
    limit: int
    remaining: int
    """Requests still allowed in the current window after this one."""
    retry_after_s: float
    """0 when allowed; otherwise how long until a retry can be allowed."""
    reset_after_s: float
    """How long until the oldest counted request leaves the window (a slot frees)."""
    window_s: float = 0.0
    """The policy's window (0: unknown, and no `RateLimit-Policy` field)."""
    policy: str = "default"
    """The policy's name in the `RateLimit` fields: the kind of key it counts."""


@runtime_checkable
class RateLimiter(Protocol):
    """Counts requests per key in a sliding window of `window_s` seconds."""

    async def check(self, key: str, *, limit: int, window_s: float) -> Decision: ...


def validate_rate_limit(key: str, *, limit: int, window_s: float) -> None:
    """Refuse a key or a policy outside the bounds every limiter supports."""
    if not 1 <= len(key) <= RATE_LIMIT_KEY_LENGTH_MAX:
        raise ValueError(f"rate limit key must be 1..{RATE_LIMIT_KEY_LENGTH_MAX} characters")
    if not 1 <= limit <= RATE_LIMIT_MAX:
        raise ValueError(f"limit must be 1..{RATE_LIMIT_MAX}")
    if not 0.001 <= window_s <= RATE_LIMIT_WINDOW_S_MAX:
        raise ValueError(f"window_s must be 0.001..{RATE_LIMIT_WINDOW_S_MAX}")


class MonotonicClock:
    """A clock that never goes back: wall-clock steps must not open or close a window."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


@dataclass(slots=True)
class _Window:
    window_ns: int
    allowed_at_ns: deque[int] = field(default_factory=deque)

    def idle(self, now_ns: int) -> bool:
        return not self.allowed_at_ns or self.allowed_at_ns[-1] <= now_ns - self.window_ns


class InProcessRateLimiter:
    """Sliding-window log in this process's memory, for the embedded default.

    Memory is bounded: at most `keys_max` keys (least recently checked evicted first, idle
    ones swept as checks go by), each holding at most `limit` timestamps. An evicted key
    that was still active starts afresh, so `keys_max` should exceed the number of keys
    active in one window. Not thread-safe: use it from one event loop.
    """

    def __init__(
        self, *, clock: Clock | None = None, keys_max: int = RATE_LIMIT_KEYS_MAX_DEFAULT
    ) -> None:
        if not 1 <= keys_max <= 10_000_000:
            raise ValueError("keys_max must be 1..10000000")
        self._clock = clock or MonotonicClock()
        self._keys_max = keys_max
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are held."""
        return len(self._windows)

    async def check(self, key: str, *, limit: int, window_s: float) -> Decision:
        # Nothing here awaits, so a check is atomic with respect to other coroutines.
        return self.check_now(key, limit=limit, window_s=window_s)

    def check_now(self, key: str, *, limit: int, window_s: float) -> Decision:
        """`check`, synchronously."""
        validate_rate_limit(key, limit=limit, window_s=window_s)
        now_ns = self._clock.now_ns()
        window_ns = max(1, round(window_s * NANOSECONDS_PER_SECOND))
        self._sweep_idle(now_ns)
        allowed_at_ns = self._window(key, window_ns).allowed_at_ns
        while allowed_at_ns and allowed_at_ns[0] <= now_ns - window_ns:
            allowed_at_ns.popleft()
        allowed = len(allowed_at_ns) < limit
        if allowed:
            allowed_at_ns.append(now_ns)
        reset_after_s = (allowed_at_ns[0] + window_ns - now_ns) / NANOSECONDS_PER_SECOND
        if allowed:
            remaining = limit - len(allowed_at_ns)
            return Decision(True, limit, remaining, 0.0, reset_after_s)
        # With a lowered limit more than `limit` may be counted; the slot that lets one
        # more in frees when all but `limit - 1` of them have left the window.
        frees_at_ns = allowed_at_ns[len(allowed_at_ns) - limit] + window_ns
        retry_after_s = (frees_at_ns - now_ns) / NANOSECONDS_PER_SECOND
        return Decision(False, limit, 0, retry_after_s, reset_after_s)

    def _window(self, key: str, window_ns: int) -> _Window:
        window = self._windows.get(key)
        if window is None or window.window_ns != window_ns:
            window = _Window(window_ns)
            self._windows[key] = window
        self._windows.move_to_end(key)
        while len(self._windows) > self._keys_max:
            self._windows.popitem(last=False)
        return window

    def _sweep_idle(self, now_ns: int) -> None:
        for _ in range(_IDLE_SWEEP_MAX):
            if not self._windows:
                return
            key, window = next(iter(self._windows.items()))
            if not window.idle(now_ns):
                return
            del self._windows[key]


def _whole_seconds(seconds: float) -> int:
    # Rounded up, so a client that waits exactly this long is not refused again.
    return max(1, math.ceil(seconds))


_POLICY_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _policy_name(key: str) -> str:
    """The name a key's policy goes by in the `RateLimit` fields: its kind, the part before
    the first `:` (`credential:…`, `user:…`, `sign-in:…`); `default` for any other key.
    Never the rest of the key, which names the caller."""
    kind, separator, _ = key.partition(":")
    return kind if separator and _POLICY_NAME.fullmatch(kind) else "default"


async def check_policy(limiter: RateLimiter, key: str, *, limit: int, window_s: float) -> Decision:
    """`limiter.check`, with the policy's window and name on the decision for its fields."""
    decision = await limiter.check(key, limit=limit, window_s=window_s)
    return dataclasses.replace(decision, window_s=window_s, policy=_policy_name(key))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers,
    Structured Field lists of one item each), and `RateLimit-Limit`, `RateLimit-Remaining`,
    `RateLimit-Reset` of the draft's older revisions (whole seconds)."""
    reset_s = _whole_seconds(decision.reset_after_s)
    # The name is a Structured Field String: `_policy_name` admits no `"` nor `\`.
    name = f'"{decision.policy}"'
    headers = {
        "RateLimit": f"{name};r={decision.remaining};t={reset_s}",
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(reset_s),
    }
    if decision.window_s > 0:
        headers["RateLimit-Policy"] = (
            f"{name};q={decision.limit};w={_whole_seconds(decision.window_s)}"
        )
    return headers


class RateLimitExceeded(RateLimited):
    """429 with `Retry-After`; the same `rate_limited` code as its parent, plus headers."""

    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, decision: Decision) -> None:
        retry_after_s = _whole_seconds(decision.retry_after_s)
        super().__init__(
            f"Rate limit of {decision.limit} requests exceeded; retry in {retry_after_s} s.",
            retry_after_s=retry_after_s,
        )
        self.decision = decision

    def response_headers(self) -> Mapping[str, str]:
        retry_after_s = _whole_seconds(self.decision.retry_after_s)
        return {"Retry-After": str(retry_after_s), **rate_limit_headers(self.decision)}


async def enforce_rate_limit(
    limiter: RateLimiter,
    *,
    key: str,
    limit: int,
    window_s: float,
    response: Response | None = None,
) -> Decision:
    """Count one request for `key`; raise `RateLimitExceeded` when over the limit, else put
    the `RateLimit` fields on `response` (when given)."""
    decision = await check_policy(limiter, key, limit=limit, window_s=window_s)
    if not decision.allowed:
        raise RateLimitExceeded(decision)
    if response is not None:
        response.headers.update(rate_limit_headers(decision))
    return decision


KeyResolver: TypeAlias = Callable[[Request], Awaitable[str | None]]
"""The key a request counts against (a credential, an end user), or None for no limit."""
LimiterProvider: TypeAlias = Callable[[Request], RateLimiter]
"""The limiter for a request, for limiters built at startup (`request.app.state`)."""


def rate_limit_dependency(
    limiter: RateLimiter | LimiterProvider,
    *,
    key_of: KeyResolver,
    limit: int,
    window_s: float,
) -> Callable[[Request, Response], Awaitable[None]]:
    """A FastAPI dependency enforcing `limit` requests per `window_s` per `key_of` key:
    `dependencies=[Depends(rate_limit_dependency(...))]` on a route or router."""
    validate_rate_limit("policy", limit=limit, window_s=window_s)  # refuse at startup

    async def limit_rate(request: Request, response: Response) -> None:
        key = await key_of(request)
        if key is None:
            return
        chosen = limiter if isinstance(limiter, RateLimiter) else limiter(request)
        await enforce_rate_limit(chosen, key=key, limit=limit, window_s=window_s, response=response)

    return limit_rate


async def throttle_sign_in(request: Request, response: Response) -> None:
    """A dependency for the public sign-in routes, which no credential guards: at most the
    sign-in policy's requests per window from one client address, so passwords and
    one-time codes cannot be guessed at speed. The address is the connection's peer (run
    behind a proxy with uvicorn's ``--proxy-headers --forwarded-allow-ips`` so it is the
    client's); a failed login is additionally counted per account by identity."""
    policy = getattr(request.app.state, "sign_in_rate_limit", None)
    if not isinstance(policy, CredentialRateLimit):
        return
    address = request.client.host if request.client is not None else "unknown"
    await enforce_rate_limit(
        policy.limiter,
        key=f"sign-in:{address}",
        limit=policy.limit,
        window_s=policy.window_s,
        response=response,
    )

"""The Redis rate limiter: the same sliding window as the in-process one, shared by every
API process.

One Lua script per check keeps it atomic: drop the timestamps that left the window, count
the rest, add this request if under the limit. Time is Redis's own (`TIME`), so API nodes
with skewed clocks still agree. Each key is a sorted set of at most `limit` members and
expires one window after its last allowed request.

The client is anything with redis-py's `eval` (`redis.asyncio.Redis` in production).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Protocol

from billfold.kit.errors import ServiceUnavailable
from billfold.kit.http.rate_limit import Decision, validate_rate_limit
from billfold.kit.ids import new_id

__all__ = [
    "RATE_LIMIT_SCRIPT",
    "REDIS_TIMEOUT_S_DEFAULT",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
    "RedisScripting",
]

REDIS_TIMEOUT_S_DEFAULT = 0.5
_MICROSECONDS_PER_SECOND = 1_000_000

# KEYS[1]: the key. ARGV: limit, window in microseconds, a unique member for this request.
# Returns {allowed (0/1), remaining, microseconds until the oldest counted request leaves,
# microseconds until a refused request may retry}.
RATE_LIMIT_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us - window_us)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now_us, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window_us / 1000))
  count = count + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset_us = tonumber(oldest[2]) + window_us - now_us
local retry_us = 0
if allowed == 0 then
  local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  retry_us = tonumber(freeing[2]) + window_us - now_us
end
return {allowed, limit - math.min(count, limit), reset_us, retry_us}
"""


class RedisScripting(Protocol):
    """The one Redis call the limiter makes; `redis.asyncio.Redis` has it."""

    def eval(self, script: str, numkeys: int, *keys_and_args: str) -> Any: ...


class RateLimiterUnavailable(ServiceUnavailable):
    code = "rate_limiter_unavailable"
    title = "Rate limiter unavailable"


class RedisRateLimiter:
    """Sliding-window rate limits in Redis, atomic per check."""

    def __init__(
        self,
        client: RedisScripting,
        *,
        key_prefix: str = "billfold:rate:",
        timeout_s: float = REDIS_TIMEOUT_S_DEFAULT,
    ) -> None:
        if not 0 < timeout_s <= 30:
            raise ValueError("timeout_s must be in (0, 30]")
        self._client = client
        self._key_prefix = key_prefix
        self._timeout_s = timeout_s

    async def check(self, key: str, *, limit: int, window_s: float) -> Decision:
        validate_rate_limit(key, limit=limit, window_s=window_s)
        window_us = max(1, round(window_s * _MICROSECONDS_PER_SECOND))
        # A unique member per request: two requests in one microsecond must count twice.
        arguments = (str(limit), str(window_us), new_id().hex)
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = self._client.eval(RATE_LIMIT_SCRIPT, 1, self._key_prefix + key, *arguments)
                if inspect.isawaitable(reply):
                    reply = await reply
        except TimeoutError as error:
            raise RateLimiterUnavailable("Redis did not answer in time.") from error
        return _decision(reply, limit=limit)


def _decision(reply: object, *, limit: int) -> Decision:
    if not isinstance(reply, list | tuple) or len(reply) != 4:
        raise RateLimiterUnavailable(f"unexpected reply from the rate limit script: {reply!r}")
    allowed, remaining, reset_us, retry_us = (int(value) for value in reply)
    return Decision(
        allowed=allowed == 1,
        limit=limit,
        remaining=remaining,
        retry_after_s=retry_us / _MICROSECONDS_PER_SECOND,
        reset_after_s=reset_us / _MICROSECONDS_PER_SECOND,
    )

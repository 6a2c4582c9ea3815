"""HTTP with safe retries.

Every POST carries an `Idempotency-Key`, generated once per logical call (unless given) and
kept across that call's retries, so the server applies a retried request at most once.

What is retried, with backoff (`Retry-After` when the server gives one):

- a request that never reached the server (connection refused, connect or pool timeout);
- for calls the server deduplicates (`replay_safe`, every authenticated call): also a
  connection that dropped after sending, and 502, 503, 504, and 409
  `idempotency_request_in_progress` (the first attempt is still running);
- 429 always: the server refused the request before doing anything.

The public sign-in calls (password, second factor, refresh, operator login) carry no
credential the server could scope a key to, so they are not `replay_safe`: replaying a
refresh whose answer was lost would look like refresh-token theft and end the session.

The clock and `sleep` are injectable, so tests neither sleep nor depend on the time.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from billfold.client.errors import ApiError, TransportError, error_for

__all__ = [
    "RETRIES_MAX",
    "RETRIES_MAX_LIMIT",
    "RETRY_DELAY_MAX_S",
    "TIMEOUT_S",
    "Credential",
    "NoCredential",
    "RequestSigner",
    "Transport",
]

TIMEOUT_S = 10.0
RETRIES_MAX = 3
RETRIES_MAX_LIMIT = 10
RETRY_DELAY_MAX_S = 30.0
USER_AGENT = "billfold-python"
_GATEWAY_STATUSES = frozenset({502, 503, 504})
_IN_PROGRESS_CODE = "idempotency_request_in_progress"
# Raised before a single byte of the request left: retrying cannot apply it twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

RequestSigner = Callable[[httpx.Request], None]
"""Adds headers to a request just before each attempt (device signatures)."""


class Credential(Protocol):
    """What authenticates a client's calls."""

    def authorization(self) -> str | None:
        """The Authorization header value for the next attempt (None: send none)."""
        ...

    def renew_after(self, error: ApiError, *, presented: str | None) -> bool:
        """The server refused `presented`: renew it if possible; True to retry once."""
        ...


class NoCredential:
    """For the public routes only."""

    def authorization(self) -> str | None:
        return None

    def renew_after(self, error: ApiError, *, presented: str | None) -> bool:
        return False


class Transport:
    """One HTTP connection pool, a credential and the retry policy."""

    def __init__(
        self,
        *,
        credential: Credential,
        base_url: str,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= retries_max <= RETRIES_MAX_LIMIT:
            raise ValueError(f"retries_max must be between 0 and {RETRIES_MAX_LIMIT}")
        if not 0 < timeout_s <= 600:
            raise ValueError("timeout_s must be more than 0 and at most 600")
        self.credential = credential
        self.sleep = sleep
        self.clock = clock
        self._retries_max = retries_max
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
            transport=http_transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
        authenticated: bool = True,
        replay_safe: bool = True,
        sign: RequestSigner | None = None,
    ) -> Any:
        """Send, retrying as the module docstring says; raise a typed error for any other
        error answer; return the decoded JSON body (None for an empty one)."""
        headers = {"Accept": "application/json"}
        content: bytes | None = None
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        query = {name: value for name, value in (params or {}).items() if value is not None}
        renewed = False
        attempt = 0
        while True:
            presented = self.credential.authorization() if authenticated else None
            request = self._http.build_request(
                method,
                path,
                content=content,
                params=query,
                headers=headers if presented is None else {**headers, "Authorization": presented},
            )
            if sign is not None:
                sign(request)  # per attempt: a device nonce is single use
            last = attempt >= self._retries_max
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                if last or not (replay_safe or isinstance(error, _NOT_SENT)):
                    raise TransportError(f"{type(error).__name__}: {error}") from error
                self.sleep(_backoff_s(attempt))
                attempt += 1
                continue
            if response.is_success:
                return response.json() if response.content else None
            failure = self._error(response)
            if (
                failure.status == 401
                and authenticated
                and not renewed
                and self.credential.renew_after(failure, presented=presented)
            ):
                renewed = True  # once per call; it does not count as a retry
                continue
            if last or not _retryable(failure, replay_safe=replay_safe):
                raise failure
            delay_s = failure.retry_after_s
            self.sleep(_backoff_s(attempt) if delay_s is None else delay_s)
            attempt += 1

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        return error_for(
            status=response.status_code,
            problem=problem if isinstance(problem, dict) else {},
            request_id=response.headers.get("X-Request-Id"),
            retry_after_s=_retry_after_s(response.headers.get("Retry-After"), now_s=self.clock()),
        )


def _retryable(error: ApiError, *, replay_safe: bool) -> bool:
    if error.status == 429:
        return True
    if not replay_safe:
        return False
    return error.status in _GATEWAY_STATUSES or error.code == _IN_PROGRESS_CODE


def _backoff_s(attempt: int) -> float:
    """Exponential with full jitter: 0.2 s, 0.4 s, 0.8 s, … at most RETRY_DELAY_MAX_S."""
    return random.uniform(0, min(0.2 * 2**attempt, RETRY_DELAY_MAX_S))


def _retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), capped; None if absent or
    malformed."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Any longer number is far beyond the cap anyway; it is not converted.
        return RETRY_DELAY_MAX_S if len(text) > 10 else min(float(text), RETRY_DELAY_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now_s, 0.0), RETRY_DELAY_MAX_S)

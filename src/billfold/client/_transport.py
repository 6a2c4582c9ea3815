"""HTTP with safe retries: every POST carries an Idempotency-Key (generated unless given),
kept across retries, so a retried request can never apply twice."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from billfold.client.errors import TransportError, error_for

__all__ = ["RETRIES_MAX", "TIMEOUT_S", "Transport"]

TIMEOUT_S = 10.0
RETRIES_MAX = 3
RETRY_DELAY_MAX_S = 30.0
_RETRIED_STATUSES = frozenset({429, 502, 503, 504})


class Transport:
    """One HTTP connection pool, the API key, the retry policy."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not 0 <= retries_max <= 10:
            raise ValueError("retries_max must be between 0 and 10")
        self._retries_max = retries_max
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "billfold-python"},
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
    ) -> Any:
        """Send, retrying connection failures, 429 and 502-504 with backoff; raise a typed
        error for any other error answer; return the decoded JSON body."""
        headers: dict[str, str] = {}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        for attempt in range(self._retries_max + 1):
            last = attempt == self._retries_max
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as error:
                if last:
                    raise TransportError(str(error)) from error
                time.sleep(_backoff_s(attempt, None))
                continue
            if response.status_code in _RETRIED_STATUSES and not last:
                time.sleep(_backoff_s(attempt, response.headers.get("Retry-After")))
                continue
            return _decode(response)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _backoff_s(attempt: int, retry_after: str | None) -> float:
    """Retry-After when the server gave one (seconds), else exponential with full jitter."""
    if retry_after is not None and retry_after.isdigit():
        return min(float(retry_after), RETRY_DELAY_MAX_S)
    return random.uniform(0, min(0.2 * 2**attempt, RETRY_DELAY_MAX_S))


def _decode(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    raise error_for(
        status=response.status_code,
        problem=problem,
        request_id=response.headers.get("X-Request-Id"),
    )

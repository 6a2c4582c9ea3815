"""HTTP with safe retries.

Every POST, PUT, PATCH and DELETE carries an `Idempotency-Key`, generated once per logical
call (unless given) and kept across that call's retries, so the server applies a retried
request at most once and answers it as it answered the first: a `PUT` whose version
precondition the first attempt moved on gets the first attempt's answer, not a mismatch.

What is retried, with backoff (`Retry-After` when the server gives one):

- a request that never reached the server (connection refused, connect or pool timeout);
- for calls the server deduplicates (`replay_safe`, every authenticated call): also a
  connection that dropped after sending, and 502, 503, 504, and 409
  `idempotency_request_in_progress` (the first attempt is still running);
- 429 always: the server refused the request before doing anything.

A DELETE retried after an attempt that may have been applied, and answered 404, did what
it was asked: the retry found the thing already gone.

The public sign-in calls (password, second factor, refresh, operator login) carry no
credential the server could scope a key to, so they are not `replay_safe`: replaying a
refresh whose answer was lost would look like refresh-token theft and end the session.

The clock and `sleep` are injectable, so tests neither sleep nor depend on the time.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from billfold.client.errors import ApiError, TransportError, UnexpectedResponseError, error_for

__all__ = [
    "RETRIES_MAX",
    "RETRIES_MAX_LIMIT",
    "RETRY_DELAY_MAX_S",
    "STREAM_READ_TIMEOUT_S",
    "TIMEOUT_S",
    "AsyncTransport",
    "Credential",
    "NoCredential",
    "RequestSigner",
    "Transport",
]

TIMEOUT_S = 10.0
RETRIES_MAX = 3
RETRIES_MAX_LIMIT = 10
RETRY_DELAY_MAX_S = 30.0
STREAM_READ_TIMEOUT_S = 60.0
"""The least a stream waits for its next line: a quiet event stream sends a keep-alive
comment only every 15 s, which the usual `timeout_s` would cut off as a read timeout."""
USER_AGENT = "billfold-python"
_GATEWAY_STATUSES = frozenset({502, 503, 504})
# The methods the server deduplicates by `Idempotency-Key`.
_KEYED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_IN_PROGRESS_CODE = "idempotency_request_in_progress"
# "No such resource or method here": every route the SDK calls exists on Billfold, so
# one of these not labelled JSON (Billfold's are problem+json) came from another server.
_NOT_HERE_STATUSES = frozenset({404, 405})
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


@dataclass
class _Retry:
    """Send the call again, after `delay_s`."""

    delay_s: float


@dataclass
class _Answer:
    """The call's decoded JSON body (None for an empty one)."""

    body: Any


class _Call:
    """One logical call: its request, built afresh for each attempt (same body, same
    idempotency key, current credential, new device signature), and what to do with each
    outcome. Shared by the sync and the async transport; does no I/O itself."""

    def __init__(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, str | int] | None,
        idempotency_key: str | None,
        authenticated: bool,
        replay_safe: bool,
        sign: RequestSigner | None,
        retries_max: int,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = {"Accept": "application/json"}
        self.content: bytes | None = content
        if json is not None:
            self.content = jsonlib.dumps(json, separators=(",", ":")).encode()
            self.headers["Content-Type"] = "application/json"
        self.headers.update(headers or {})
        if method in _KEYED_METHODS:
            self.headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        self.query = {name: value for name, value in (params or {}).items() if value is not None}
        self.authenticated = authenticated
        self.replay_safe = replay_safe
        self.sign = sign
        self.retries_max = retries_max
        self.attempt = 0
        self.applied_maybe = False
        """An earlier attempt may have been applied (its answer lost, or a gateway's 5xx)."""
        self.renewed = False
        self.presented: str | None = None

    def build(
        self, http: httpx.Client | httpx.AsyncClient, credential: Credential
    ) -> httpx.Request:
        self.presented = credential.authorization() if self.authenticated else None
        headers = dict(self.headers)
        if self.presented is not None:
            headers["Authorization"] = self.presented
        request = http.build_request(
            self.method, self.path, content=self.content, params=self.query, headers=headers
        )
        if self.sign is not None:
            self.sign(request)  # per attempt: a device nonce is single use
        return request

    def after_transport_error(self, error: httpx.TransportError) -> _Retry:
        """Retry if allowed, else raise `TransportError`."""
        if self.attempt >= self.retries_max or not (
            self.replay_safe or isinstance(error, _NOT_SENT)
        ):
            raise TransportError(f"{type(error).__name__}: {error}") from error
        self.attempt += 1
        self.applied_maybe |= not isinstance(error, _NOT_SENT)
        return _Retry(_backoff_s(self.attempt - 1))

    def after_response(
        self, response: httpx.Response, *, credential: Credential, now_s: float
    ) -> _Answer | _Retry:
        """The answer, a retry (0 s after a renewed credential), or the typed error."""
        if response.is_success:
            return _Answer(_json(response) if response.content else None)
        failure = _error(response, now_s=now_s)
        if failure.status == 404 and self.method == "DELETE" and self.applied_maybe:
            return _Answer(None)  # an earlier attempt deleted it: gone, as asked
        if (
            failure.status == 401
            and self.authenticated
            and not self.renewed
            and credential.renew_after(failure, presented=self.presented)
        ):
            self.renewed = True  # once per call; it does not count as a retry
            return _Retry(0.0)
        if self.attempt >= self.retries_max or not _retryable(
            failure, replay_safe=self.replay_safe
        ):
            raise failure
        self.attempt += 1
        self.applied_maybe |= failure.status != 429  # a 429 refused before doing anything
        delay_s = failure.retry_after_s
        return _Retry(_backoff_s(self.attempt - 1) if delay_s is None else delay_s)


def _check_options(*, timeout_s: float, retries_max: int) -> None:
    if not 0 <= retries_max <= RETRIES_MAX_LIMIT:
        raise ValueError(f"retries_max must be between 0 and {RETRIES_MAX_LIMIT}")
    if not 0 < timeout_s <= 600:
        raise ValueError("timeout_s must be more than 0 and at most 600")


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
        _check_options(timeout_s=timeout_s, retries_max=retries_max)
        self.credential = credential
        self.sleep = sleep
        self.clock = clock
        self._retries_max = retries_max
        self._stream_timeout = httpx.Timeout(timeout_s, read=max(timeout_s, STREAM_READ_TIMEOUT_S))
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
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send, retrying as the module docstring says; raise a typed error for any other
        error answer; return the decoded JSON body (None for an empty one). `content` and
        `headers` send raw bytes exactly (a signed body), instead of `json`."""
        call = _Call(
            method,
            path,
            json=json,
            params=params,
            idempotency_key=idempotency_key,
            authenticated=authenticated,
            replay_safe=replay_safe,
            sign=sign,
            retries_max=self._retries_max,
            content=content,
            headers=headers,
        )
        while True:  # bounded: each pass answers, raises or counts an attempt (or one renewal)
            request = call.build(self._http, self.credential)
            try:
                response = _send(self._http, request)
            except httpx.TransportError as error:
                self.sleep(call.after_transport_error(error).delay_s)
                continue
            outcome = call.after_response(response, credential=self.credential, now_s=self.clock())
            if isinstance(outcome, _Answer):
                return outcome.body
            if outcome.delay_s > 0:
                self.sleep(outcome.delay_s)

    def stream_lines(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        """GET a streamed answer (Server-Sent Events) line by line, with the credential.
        Not retried: a caller resumes a stream itself (SSE's `Last-Event-ID`). An error
        answer raises the typed error as `request` would; a success that is not an event
        stream, `UnexpectedResponseError` (read as one, it would end at once, eventless)."""
        query = {name: value for name, value in (params or {}).items() if value is not None}
        sent = {"Accept": "text/event-stream", **(headers or {})}
        authorization = self.credential.authorization()
        if authorization is not None:
            sent["Authorization"] = authorization
        try:
            with (
                self._http.stream(
                    "GET", path, params=query, headers=sent, timeout=self._stream_timeout
                ) as response,
                _decoding(response),
            ):
                if not response.is_success:
                    response.read()
                    raise _error(response, now_s=self.clock())
                if _media_type(response) != "text/event-stream":
                    raise _unexpected(response, "is not an event stream")
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise TransportError(f"{type(error).__name__}: {error}") from error


class AsyncTransport:
    """`Transport` for asyncio: the same calls, policy and errors over `httpx.AsyncClient`.
    Its credential must not need a network call to renew (an API key)."""

    def __init__(
        self,
        *,
        credential: Credential,
        base_url: str,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_options(timeout_s=timeout_s, retries_max=retries_max)
        self.credential = credential
        self.sleep = sleep
        self.clock = clock
        self._retries_max = retries_max
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
            transport=http_transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        call = _Call(
            method,
            path,
            json=json,
            params=params,
            idempotency_key=idempotency_key,
            authenticated=True,
            replay_safe=True,
            sign=None,
            retries_max=self._retries_max,
        )
        while True:
            request = call.build(self._http, self.credential)
            try:
                response = await _send_async(self._http, request)
            except httpx.TransportError as error:
                await self.sleep(call.after_transport_error(error).delay_s)
                continue
            outcome = call.after_response(response, credential=self.credential, now_s=self.clock())
            if isinstance(outcome, _Answer):
                return outcome.body
            if outcome.delay_s > 0:
                await self.sleep(outcome.delay_s)


def _send(http: httpx.Client, request: httpx.Request) -> httpx.Response:
    """`http.send(request)`, the body read, one that does not decode raising
    `UnexpectedResponseError` (httpx's `DecodingError` carries no response)."""
    response = http.send(request, stream=True)
    try:
        with _decoding(response):
            response.read()
    finally:
        response.close()
    return response


async def _send_async(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`_send` for asyncio."""
    response = await http.send(request, stream=True)
    try:
        with _decoding(response):
            await response.aread()
    finally:
        await response.aclose()
    return response


@contextmanager
def _decoding(response: httpx.Response) -> Iterator[None]:
    """A body its `Content-Encoding` does not decode (a proxy's mislabelled page) is no
    answer of Billfold's: `UnexpectedResponseError`, not an httpx error."""
    try:
        yield
    except httpx.DecodingError as error:
        raise _unexpected(response, "does not decode") from error


def _error(response: httpx.Response, *, now_s: float) -> ApiError:
    """The typed error of an error answer, or `UnexpectedResponseError` when the answer
    is not Billfold's (`_check_is_billfolds`)."""
    _check_is_billfolds(response)
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    return error_for(
        status=response.status_code,
        problem=problem if isinstance(problem, dict) else {},
        request_id=response.headers.get("X-Request-Id"),
        retry_after_s=_retry_after_s(response.headers.get("Retry-After"), now_s=now_s),
    )


def _check_is_billfolds(response: httpx.Response) -> None:
    """Raise `UnexpectedResponseError` for an error answer Billfold never gives: a
    redirect (it redirects none of the SDK's calls, and httpx follows none), or a 404 or
    405 not labelled JSON (every one of Billfold's is problem+json), such as a wrong
    `base_url`'s 404 page. Taken as Billfold's, that page read as `NotFoundError` said the
    thing did not exist (and ended a retried DELETE as done) when the call never reached
    Billfold. Other error pages (a gateway's 502, a proxy's 413 or 429, a firewall's 403)
    are what something in front of Billfold answers about the call: they stay typed."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location")
        raise _unexpected(response, f"is a redirect to {location}" if location else "is a redirect")
    if status in _NOT_HERE_STATUSES:
        media_type = _media_type(response)
        if not (media_type == "application/json" or _is_json_suffixed(media_type)):
            raise _unexpected(response, "is not a problem+json answer")


def _retryable(error: ApiError, *, replay_safe: bool) -> bool:
    if error.status == 429:
        return True
    if not replay_safe:
        return False
    return error.status in _GATEWAY_STATUSES or error.code == _IN_PROGRESS_CODE


def _json(response: httpx.Response) -> Any:
    """A success's JSON body, or `UnexpectedResponseError` when it has none. A body labelled
    other than JSON is not Billfold's answer even when it parses (a proxy's `text/plain`
    `"ok"`), and would fail later, far from the call."""
    media_type = _media_type(response)
    if not (media_type == "application/json" or _is_json_suffixed(media_type)):
        raise _unexpected(response, "is not JSON")
    try:
        return response.json()
    except ValueError as error:  # not JSON, or not in a Unicode encoding
        raise _unexpected(response, "is not JSON") from error


def _is_json_suffixed(media_type: str) -> bool:
    """An `application/…+json` type (RFC 6839 structured syntax suffix)."""
    return media_type.startswith("application/") and media_type.endswith("+json")


def _media_type(response: httpx.Response) -> str:
    """The Content-Type's media type, lowercased, without parameters ("" if none)."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower()


def _unexpected(response: httpx.Response, why: str) -> UnexpectedResponseError:
    content_type = response.headers.get("content-type")
    return UnexpectedResponseError(
        f"{response.status_code} from {response.request.url} {why}"
        f" ({content_type or 'no content type'}): is base_url Billfold's?",
        status=response.status_code,
        content_type=content_type,
    )


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

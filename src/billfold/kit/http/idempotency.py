"""`Idempotency-Key` on POST, PUT, PATCH and DELETE: the same request again gets the first
one's response.

Same key and same request → the stored response, with `Idempotent-Replayed: true`; same key
and a different request → 422 `idempotency_key_reused`; same key while the first still
runs → 409 `idempotency_request_in_progress`; a malformed key → 400
`idempotency_key_invalid`. A 5xx (or 408, 425, 429, or an exception) is not kept, so the
client may retry. Keys are scoped by `scope_of`, which the application derives from the
caller's tenant and credential; a request it cannot scope passes through untouched (the
auth layer refuses it later).

The request is stored as a fingerprint, an HMAC under the key `fingerprint_key` gives (a
key outside the database: a card number's plain hash is found by hashing guesses); a key
stored with a plain SHA-256 before fingerprints were keyed still matches its request.

The response is held until it is stored, so a client that got an answer and retries gets
the replay, never a 409.

A response marked `Cache-Control: no-store` (one that shows a secret once: a new API key,
a webhook secret, a one-time password, TOTP seed or recovery codes) is not kept: its key is
completed with a 409 `idempotency_response_withheld` instead, which says the first request
succeeded (`original_status`) without showing its secret again. The request still runs
once. So does one whose response was too large to keep (`response_body_max_bytes`) or not
a plain one: a retry gets the same 409, not a second run.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.kit.auth import counted_rate_limit_fields
from billfold.kit.errors import (
    PROBLEM_JSON,
    BadRequest,
    BillfoldError,
    Conflict,
    ValidationFailed,
    problem_instance,
)
from billfold.kit.http.bodies import read_body, replaying_receive
from billfold.kit.http.idempotency_models import IDEMPOTENCY_KEY_LENGTH_MAX
from billfold.kit.http.idempotency_sealing import SEAL_OVERHEAD_BYTES, response_key, seal, unseal
from billfold.kit.http.idempotency_store import (
    IdempotencyStore,
    InProgress,
    Mismatch,
    Replay,
    Started,
    StoredResponse,
    media_type_of,
    request_fingerprint,
)
from billfold.kit.http.limits import REQUEST_BODY_MAX_BYTES_DEFAULT, REQUEST_BODY_MAX_BYTES_LIMIT
from billfold.kit.http.problems import problem_response, send_problem

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "KEYED_METHODS",
    "REPLAYED_HEADER",
    "FingerprintKeyProvider",
    "IdempotencyKeyInvalid",
    "IdempotencyKeyReused",
    "IdempotencyMiddleware",
    "IdempotencyRequestInProgress",
    "IdempotencyResponseWithheld",
    "ScopeResolver",
    "StoreProvider",
    "parse_idempotency_key",
]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
KEYED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods a key applies to: every one that changes something. POST and PATCH are not
idempotent (the draft's case); PUT and DELETE are by definition, but a retried PUT whose
version precondition the first one moved on, or a DELETE whose target the first removed,
would answer what the first made happen instead of what it answered."""
REPLAYED_HEADER = "Idempotent-Replayed"
_HEADER_NAME = IDEMPOTENCY_KEY_HEADER.lower().encode("ascii")
# Replaying these reproduces what the client acts on; the rest (dates, ids) is per response.
# A 405 must name its methods (`Allow`) and a 401 its challenge (`WWW-Authenticate`), a 403
# of insufficient scope the scopes that would do, a 415 the media type it takes (`Accept`)
# (RFC 9110 sections 15.5.6, 11.6.1, 15.5.16; RFC 6750 section 3.1): a replay without
# them would not be the same answer.
_STORED_HEADERS = frozenset(
    {b"content-type", b"location", b"allow", b"www-authenticate", b"accept"}
)
# Outcomes a retry may change: timeouts, too early, rate limited. 5xx are added below.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})

# An Item whose value is a String (RFC 8941 sections 3.3.3 and 3.1.2); its parameters (of
# any bare item: decimal, integer, string, token, byte sequence, boolean) name no key.
_SF_BARE_ITEM = (
    rb'-?(?:[0-9]{1,12}\.[0-9]{1,3}|[0-9]{1,15})|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
    rb"|[A-Za-z*][!#$%&'*+.^_`|~:/0-9A-Za-z-]*|:[A-Za-z0-9+/=]*:|\?[01]"
)
_SF_STRING_ITEM = re.compile(
    rb'"(?P<string>(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"'
    rb"(?:; *[a-z*][a-z0-9_.*-]*(?:=(?:" + _SF_BARE_ITEM + rb"))?)*"
)
_SF_ESCAPE = re.compile(rb'\\(["\\])')

_logger = logging.getLogger(__name__)

ScopeResolver: TypeAlias = Callable[[HTTPConnection], Awaitable[str | None]]
"""Whose keys the request uses (tenant and credential), or None to skip idempotency."""
StoreProvider: TypeAlias = Callable[[HTTPConnection], IdempotencyStore]
"""The store for a request, for stores built at startup (`request.app.state`)."""
FingerprintKeyProvider: TypeAlias = Callable[[HTTPConnection], Awaitable[bytes | None]]
"""The key requests' fingerprints are HMACs under, or None for plain SHA-256 (no keystore)."""


class IdempotencyKeyInvalid(BadRequest):
    code = "idempotency_key_invalid"
    title = "Invalid idempotency key"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "Idempotency key reused for a different request"


class IdempotencyRequestInProgress(Conflict):
    code = "idempotency_request_in_progress"
    title = "A request with this idempotency key is in progress"


class IdempotencyResponseWithheld(Conflict):
    code = "idempotency_response_withheld"
    title = "The response to this idempotency key is not kept"


def parse_idempotency_key(values: list[bytes]) -> str | None:
    """The key from the header's values: None when absent; refused unless exactly one value
    of 1..255 printable ASCII characters. A value that opens with `"` is a Structured Field
    String, as draft-ietf-httpapi-idempotency-key-header writes the key (`"8e03…"`): the key
    is what it quotes, so `"abc"` and the bare `abc` (as the SDK sends it) are one key, and a
    malformed one is refused rather than taken, quotes and all, as another key."""
    if not values:
        return None
    if len(values) > 1:
        raise IdempotencyKeyInvalid(f"send one {IDEMPOTENCY_KEY_HEADER} header")
    value = values[0]
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise IdempotencyKeyInvalid(f"the key must be 1..{IDEMPOTENCY_KEY_LENGTH_MAX} characters")
    if any(not 0x20 <= byte <= 0x7E for byte in value):
        raise IdempotencyKeyInvalid("the key must be printable ASCII")
    item_text = value.strip(b" ")  # a Structured Field's parser discards them
    if not item_text.startswith(b'"'):
        return value.decode("ascii")
    item = _SF_STRING_ITEM.fullmatch(item_text)
    if item is None or item["string"] == b"":
        raise IdempotencyKeyInvalid(
            "a quoted key must be one non-empty Structured Field String (RFC 8941 section 3.3.3)"
        )
    return _SF_ESCAPE.sub(rb"\1", item["string"]).decode("ascii")


@dataclass(slots=True)
class _Recorder:
    """Holds the application's response until it is stored, up to a size."""

    send: Send
    body_max_bytes: int
    held: list[Message] = field(default_factory=list)
    body_bytes: int = 0
    passing_through: bool = False
    status: int | None = None
    """The response's status, once it has started (held or passed through)."""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        if self.passing_through:
            await self.send(message)
            return
        self.held.append(message)
        if message["type"] == "http.response.body":
            self.body_bytes += len(message.get("body", b""))
        # Too big to keep, or not a plain response (trailers, file sends): deliver as it
        # comes; the key is completed as withheld, since a partial replay would not be the
        # same answer and running the request again would break "at most once".
        if self.body_bytes > self.body_max_bytes or message["type"] not in (
            "http.response.start",
            "http.response.body",
        ):
            self.passing_through = True
            await self.flush()

    async def flush(self) -> None:
        held, self.held = self.held, []
        for message in held:
            await self.send(message)

    @property
    def no_store(self) -> bool:
        """Whether the held response forbids being kept (`Cache-Control: no-store`)."""
        if not self.held or self.held[0]["type"] != "http.response.start":
            return False
        return any(
            bytes(name).lower() == b"cache-control" and b"no-store" in bytes(value).lower()
            for name, value in self.held[0].get("headers", [])
        )

    def stored(self) -> StoredResponse | None:
        """The held response, if it is one that may be replayed."""
        if self.passing_through or not self.held or self.held[0]["type"] != "http.response.start":
            return None
        start = self.held[0]
        headers = tuple(
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in start.get("headers", [])
            if bytes(name).lower() in _STORED_HEADERS
        )
        body = b"".join(message.get("body", b"") for message in self.held[1:])
        return StoredResponse(status=int(start["status"]), headers=headers, body=body)


def _replay_response(stored: StoredResponse, scope: Scope) -> Response:
    # The scope resolver may have counted the request: a replay says where its caller stands.
    headers = {**counted_rate_limit_fields(scope), **dict(stored.headers)}
    headers[REPLAYED_HEADER] = "true"
    return Response(content=stored.body, status_code=stored.status, headers=headers)


def _key_values(scope: Scope) -> list[bytes]:
    return [bytes(value) for name, value in scope["headers"] if name == _HEADER_NAME]


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return None


class IdempotencyMiddleware:
    """Applies `Idempotency-Key` to every POST, PUT, PATCH and DELETE the `scope_of`
    callable can scope."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore | StoreProvider,
        scope_of: ScopeResolver,
        fingerprint_key: FingerprintKeyProvider | None = None,
        body_max_bytes: int = REQUEST_BODY_MAX_BYTES_DEFAULT,
    ) -> None:
        if not 1 <= body_max_bytes <= REQUEST_BODY_MAX_BYTES_LIMIT:
            raise ValueError(f"body_max_bytes must be 1..{REQUEST_BODY_MAX_BYTES_LIMIT}")
        self.app = app
        self._store = store
        self._scope_of = scope_of
        self._fingerprint_key = fingerprint_key
        self.body_max_bytes = body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in KEYED_METHODS:
            await self.app(scope, receive, send)
            return
        values = _key_values(scope)
        try:
            # The scope first: a request it cannot scope (no valid credential, a public
            # route) has no idempotency, so its key is not looked at: the route answers it
            # (401 to a caller without a valid credential, whatever the key).
            owner = await self._scope_of(HTTPConnection(scope)) if values else None
            key = None if owner is None else parse_idempotency_key(values)
        except BillfoldError as error:
            headers = counted_rate_limit_fields(scope)
            await send_problem(error, scope, receive, send, headers=headers)
            return
        if key is None or owner is None:
            await self.app(scope, receive, send)
            return
        await self._guard(scope, receive, send, owner=owner, key=key)

    def _store_for(self, scope: Scope) -> IdempotencyStore:
        if isinstance(self._store, IdempotencyStore):
            return self._store
        return self._store(HTTPConnection(scope))

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, *, owner: str, key: str
    ) -> None:
        store = self._store_for(scope)
        try:
            body = await read_body(receive, self.body_max_bytes)
            if body is None:
                return  # the client left before sending its request
            fingerprint_key = (
                None
                if self._fingerprint_key is None
                else await self._fingerprint_key(HTTPConnection(scope))
            )
            of_request = functools.partial(
                request_fingerprint,
                method=scope["method"],
                path=scope["path"],
                query_string=scope.get("query_string", b""),
                body=body,
                media_type=media_type_of(_content_type(scope)),
            )
            outcome = await store.begin(
                scope=owner,
                key=key,
                fingerprint=of_request(key=fingerprint_key),
                # Keys stored before fingerprints were keyed hold plain SHA-256.
                earlier_fingerprint=None if fingerprint_key is None else of_request,
            )
            if isinstance(outcome, Mismatch):
                raise IdempotencyKeyReused("This key was first used with a different request.")
            if isinstance(outcome, InProgress):
                raise IdempotencyRequestInProgress("Retry once the first request has finished.")
            # Only a replay or an execution reads or writes a kept response.
            sealing = (
                None
                if fingerprint_key is None
                else response_key(fingerprint_key, lambda key: of_request(key=key))
            )
        except BillfoldError as error:
            await send_problem(
                error, scope, receive, send, headers=counted_rate_limit_fields(scope)
            )
            return
        if isinstance(outcome, Replay):
            replayed = unseal(outcome.response, sealing)
            await _replay_response(replayed, scope)(scope, receive, send)
            return
        await self._execute(store, outcome, body, scope, receive, send, sealing=sealing)

    async def _execute(
        self,
        store: IdempotencyStore,
        started: Started,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        sealing: bytes | None,
    ) -> None:
        kept_max = store.response_body_max_bytes
        if sealing is not None:  # the sealed body must fit what the store keeps
            kept_max = max(kept_max - SEAL_OVERHEAD_BYTES, 0)
        recorder = _Recorder(send=send, body_max_bytes=kept_max)
        try:
            await self.app(scope, replaying_receive(body, receive), recorder)
        except Exception:
            await _abandon(store, started)
            raise
        status, stored = recorder.status, recorder.stored()
        path = str(scope.get("path", ""))
        if status is None or status >= 500 or status in _RETRYABLE_STATUSES:
            await _abandon(store, started)
        else:
            if stored is None:
                stored = _withheld(status, path=path, why=_TOO_LARGE)
            elif recorder.no_store:
                stored = _withheld(stored.status, path=path, why=_NOT_TO_KEEP)
            await _complete(store, started, stored if sealing is None else seal(stored, sealing))
        await recorder.flush()


_NOT_TO_KEEP = "showed a secret once and is not kept"
_TOO_LARGE = "was too large to keep"


def _withheld(status: int, *, path: str, why: str) -> StoredResponse:
    """What a retry gets instead of a response that must not, or could not, be kept."""
    error = IdempotencyResponseWithheld(
        f"The first request with this key was answered {status}; that response {why}, so"
        " it is not replayed.",
        original_status=status,
    )
    rendered = problem_response(error, instance=problem_instance(path))
    return StoredResponse(
        status=error.status, headers=(("content-type", PROBLEM_JSON),), body=bytes(rendered.body)
    )


async def _abandon(store: IdempotencyStore, started: Started) -> None:
    try:
        await store.abandon(started)
    except Exception:
        # The key stays in progress until its lease ends; the client's answer matters more.
        _logger.exception("could not release idempotency key %r", started.key)


async def _complete(store: IdempotencyStore, started: Started, stored: StoredResponse) -> None:
    try:
        kept = await store.complete(started, stored)
    except Exception:
        # The work is done: the client still gets its answer. Retries see 409 until the
        # lease ends, then execute again (domain ids keep money from moving twice).
        _logger.exception("could not store the response for idempotency key %r", started.key)
        return
    if not kept:
        _logger.warning("idempotency key %r was taken over before completing", started.key)

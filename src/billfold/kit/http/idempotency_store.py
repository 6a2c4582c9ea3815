"""Idempotency keys: the decisions, each in its own committed database transaction.

`begin` runs before the request's handler and commits at once, so a concurrent request with
the same key sees it; `complete` or `abandon` runs after the handler. The handler's own
writes commit independently: if the process dies between the two, the key stays
in_progress until its lease runs out, and then one retry may execute again (the domain's
own ids — a transfer's id, say — keep that retry from moving money twice).

    begin ─► Started ──► complete (a response to keep) ─► later begins: Replay
                    └──► abandon  (5xx, crash, unstorable) ─► the next begin: Started
          ─► Replay       same key, same request, finished
          ─► InProgress   same key, same request, still running (409)
          ─► Mismatch     same key, another request (422)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation, ServiceUnavailable, invariant
from billfold.kit.http.idempotency_models import (
    FINGERPRINT_LENGTH,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    IDEMPOTENCY_SCOPE_LENGTH_MAX,
    STATUS_COMPLETED,
    IdempotencyKey,
)
from billfold.kit.http.idempotency_repository import Claim, IdempotencyRepository
from billfold.kit.ids import new_id

__all__ = [
    "IDEMPOTENCY_LEASE_S_DEFAULT",
    "IDEMPOTENCY_LEASE_S_MAX",
    "IDEMPOTENCY_TTL_S_MAX",
    "IDEMPOTENCY_TTL_S_MIN",
    "PURGE_BATCH_MAX",
    "RESPONSE_BODY_MAX_BYTES_DEFAULT",
    "RESPONSE_BODY_MAX_BYTES_LIMIT",
    "BeginOutcome",
    "EarlierFingerprint",
    "IdempotencyStore",
    "IdempotencyStoreBusy",
    "InProgress",
    "Mismatch",
    "Replay",
    "Started",
    "StoredResponse",
    "media_type_of",
    "request_fingerprint",
]

NANOSECONDS_PER_SECOND = 1_000_000_000
IDEMPOTENCY_TTL_S_MIN = 24 * 3600
"""Issue 3: keys are kept at least 24 hours."""
IDEMPOTENCY_TTL_S_MAX = 30 * 24 * 3600
IDEMPOTENCY_LEASE_S_DEFAULT = 60
IDEMPOTENCY_LEASE_S_MAX = 3600
RESPONSE_BODY_MAX_BYTES_DEFAULT = 1024 * 1024
RESPONSE_BODY_MAX_BYTES_LIMIT = 64 * 1024 * 1024
PURGE_BATCH_MAX = 10_000
# A begin retries only when another request changed the row between its reads (a purge, a
# takeover); the retry then sees the settled row, so a few attempts always suffice.
_BEGIN_ATTEMPTS_MAX = 3


class IdempotencyStoreBusy(ServiceUnavailable):
    code = "idempotency_store_busy"
    title = "Idempotency key contended"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for replay."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Started:
    """This request holds the key: run it, then `complete` or `abandon`."""

    scope: str
    key: str
    attempt_id: str


@dataclass(frozen=True, slots=True)
class Replay:
    """The same request already finished: answer with its stored response."""

    response: StoredResponse


@dataclass(frozen=True, slots=True)
class InProgress:
    """The same request is still running elsewhere."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was first used for a different request."""


BeginOutcome: TypeAlias = Started | Replay | InProgress | Mismatch
EarlierFingerprint: TypeAlias = Callable[[], str]
"""The request's fingerprint as an earlier release stored it."""


JSON_MEDIA_TYPE = "application/json"


def request_fingerprint(
    *,
    method: str,
    path: str,
    query_string: bytes,
    body: bytes,
    media_type: str = JSON_MEDIA_TYPE,
    key: bytes | None = None,
) -> str:
    """HMAC-SHA-256 under `key` (hex) identifying a request: its method, path, query
    string, body, and the media type the body was sent as (`media_type_of` its
    Content-Type). Without a key, a plain SHA-256 of the same input.

    The fingerprint is stored for a day or more, and a body may be a card number or an
    email searched for: keyed, it tells nothing to someone who reads the database (a plain
    hash of a card number is found by trying the ~10^8 numbers its issuer prefix leaves).

    Each part but the body is length-prefixed, so no two different requests share an input.
    A JSON body, or no body without a Content-Type, leaves the media type out: such
    fingerprints are the ones stored before the media type counted, so a retry across
    that upgrade still matches. Any other media type counts, so a body first sent as
    `text/plain` (415) and then as JSON with the same key is another request (422
    `idempotency_key_reused`), not the replay of the 415.
    """
    parts = [method.encode(), path.encode("utf-8", "surrogatepass"), query_string]
    if media_type != JSON_MEDIA_TYPE and (body or media_type):
        parts.append(b"media-type:" + media_type.encode("latin-1"))
    digest = hashlib.sha256() if key is None else hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(body)
    return digest.hexdigest()


def media_type_of(content_type: bytes | None) -> str:
    """A Content-Type's media type, lowercased, without parameters or spaces (RFC 9110
    8.3.1: `Application/JSON; charset=utf-8` is `application/json`); "" when absent."""
    if content_type is None:
        return ""
    return content_type.decode("latin-1").partition(";")[0].strip().lower()


def _same_request(
    stored: str, fingerprint: str, earlier_fingerprint: EarlierFingerprint | None
) -> bool:
    if hmac.compare_digest(stored, fingerprint):
        return True
    return earlier_fingerprint is not None and hmac.compare_digest(stored, earlier_fingerprint())


def _check_names(scope: str, key: str) -> None:
    if not 1 <= len(scope) <= IDEMPOTENCY_SCOPE_LENGTH_MAX:
        raise ValueError(f"scope must be 1..{IDEMPOTENCY_SCOPE_LENGTH_MAX} characters")
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise ValueError(f"key must be 1..{IDEMPOTENCY_KEY_LENGTH_MAX} characters")


def _check_bounds(*, ttl_s: int, lease_s: int, response_body_max_bytes: int) -> None:
    if not IDEMPOTENCY_TTL_S_MIN <= ttl_s <= IDEMPOTENCY_TTL_S_MAX:
        raise ValueError(f"ttl_s must be {IDEMPOTENCY_TTL_S_MIN}..{IDEMPOTENCY_TTL_S_MAX}")
    if not 1 <= lease_s <= IDEMPOTENCY_LEASE_S_MAX:
        raise ValueError(f"lease_s must be 1..{IDEMPOTENCY_LEASE_S_MAX}")
    if not 0 <= response_body_max_bytes <= RESPONSE_BODY_MAX_BYTES_LIMIT:
        raise ValueError(f"response_body_max_bytes must be 0..{RESPONSE_BODY_MAX_BYTES_LIMIT}")


def _stored(row: IdempotencyKey) -> StoredResponse:
    status, body = row.response_status, row.response_body
    if status is None or body is None:
        raise InvariantViolation("a completed idempotency key has a stored response")
    headers = tuple((str(name), str(value)) for name, value in row.response_headers or [])
    return StoredResponse(status=status, headers=headers, body=body)


class IdempotencyStore:
    """Idempotency keys over a unit of work; one short transaction per call."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        *,
        clock: Clock | None = None,
        ttl_s: int = IDEMPOTENCY_TTL_S_MIN,
        lease_s: int = IDEMPOTENCY_LEASE_S_DEFAULT,
        response_body_max_bytes: int = RESPONSE_BODY_MAX_BYTES_DEFAULT,
    ) -> None:
        _check_bounds(ttl_s=ttl_s, lease_s=lease_s, response_body_max_bytes=response_body_max_bytes)
        self._unit_of_work = unit_of_work
        self._clock = clock or SystemClock()
        self._ttl_ns = ttl_s * NANOSECONDS_PER_SECOND
        self._lease_ns = lease_s * NANOSECONDS_PER_SECOND
        self.response_body_max_bytes = response_body_max_bytes

    async def begin(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        earlier_fingerprint: EarlierFingerprint | None = None,
    ) -> BeginOutcome:
        """Claim `key` in `scope` for the request with `fingerprint`, or say why not.

        `earlier_fingerprint` gives the same request's fingerprint as an earlier release
        stored it (unkeyed), asked for only when a stored key's fingerprint differs: a
        retry across the upgrade is still the same request."""
        _check_names(scope, key)
        invariant(len(fingerprint) == FINGERPRINT_LENGTH, "fingerprint is a SHA-256 in hex")
        for _ in range(_BEGIN_ATTEMPTS_MAX):
            async with self._unit_of_work.begin() as session:
                outcome = await self._begin_once(
                    IdempotencyRepository(session), scope, key, fingerprint, earlier_fingerprint
                )
            if outcome is not None:
                return outcome
        raise IdempotencyStoreBusy("The idempotency key kept changing; retry the request.")

    async def _begin_once(
        self,
        repository: IdempotencyRepository,
        scope: str,
        key: str,
        fingerprint: str,
        earlier_fingerprint: EarlierFingerprint | None,
    ) -> BeginOutcome | None:
        now_ns = self._clock.now_ns()
        claim = Claim(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            attempt_id=new_id().hex,
            now_ns=now_ns,
            locked_until=now_ns + self._lease_ns,
            expires_at=now_ns + self._ttl_ns,
        )
        if await repository.insert_if_absent(claim):
            return Started(scope=scope, key=key, attempt_id=claim.attempt_id)
        row = await repository.get(scope=scope, key=key)
        if row is None:
            return None  # purged since the insert saw it: try again
        return await self._resolve(repository, row, claim, earlier_fingerprint)

    async def _resolve(
        self,
        repository: IdempotencyRepository,
        row: IdempotencyKey,
        claim: Claim,
        earlier_fingerprint: EarlierFingerprint | None,
    ) -> BeginOutcome | None:
        # An expired key is as good as absent, whatever request first used it.
        renew = row.expires_at <= claim.now_ns
        if not renew:
            if not _same_request(row.fingerprint, claim.fingerprint, earlier_fingerprint):
                return Mismatch()
            if row.status == STATUS_COMPLETED:
                return Replay(_stored(row))
            if row.locked_until > claim.now_ns:
                return InProgress()
        # Expired, or in progress past its lease (the process running it died): take over.
        taken = await repository.take_over(claim, previous_attempt_id=row.attempt_id, renew=renew)
        return (
            Started(scope=claim.scope, key=claim.key, attempt_id=claim.attempt_id)
            if taken
            else None
        )

    async def complete(self, started: Started, response: StoredResponse) -> bool:
        """Keep `response` for replays; False if this execution lost the key meanwhile."""
        invariant(
            len(response.body) <= self.response_body_max_bytes,
            "the caller bounds stored responses by response_body_max_bytes",
        )
        async with self._unit_of_work.begin() as session:
            return await IdempotencyRepository(session).complete(
                scope=started.scope,
                key=started.key,
                attempt_id=started.attempt_id,
                status=response.status,
                headers=[[name, value] for name, value in response.headers],
                body=response.body,
            )

    async def abandon(self, started: Started) -> bool:
        """Forget the key so the client may retry; False if this execution no longer held it."""
        async with self._unit_of_work.begin() as session:
            return await IdempotencyRepository(session).delete_in_progress(
                scope=started.scope, key=started.key, attempt_id=started.attempt_id
            )

    async def purge_expired(
        self, now_ns: int | None = None, *, limit: int = PURGE_BATCH_MAX
    ) -> int:
        """Delete up to `limit` expired keys; how many went. Never one younger than 24 hours,
        whatever its expires_at says."""
        if not 1 <= limit <= PURGE_BATCH_MAX:
            raise ValueError(f"limit must be 1..{PURGE_BATCH_MAX}")
        now_ns = self._clock.now_ns() if now_ns is None else now_ns
        created_before_ns = now_ns - IDEMPOTENCY_TTL_S_MIN * NANOSECONDS_PER_SECOND
        async with self._unit_of_work.begin() as session:
            return await IdempotencyRepository(session).delete_expired(
                now_ns=now_ns, created_before_ns=created_before_ns, limit=limit
            )

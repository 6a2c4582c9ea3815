"""Idempotency keys for a busy API: concurrent requests share database transactions.

`IdempotencyStore` spends one committed transaction on each `begin` and each `complete`,
so two durable commits per POST, more than the work many requests do. This store gives the
common cases the ledger's lesson: every `begin` waiting while a batch is written joins the
next one (one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`), and so does every
`complete` (one executemany `UPDATE`, then one read-back). The semantics are the parent's:

- a key the batch created is `Started`, exactly as the parent's first insert;
- a key that already existed (a replay, a reuse, a request still running, a takeover), or
  that two requests in one batch both claim, takes the parent's full path, one at a time;
- `abandon` and `purge_expired` are the parent's (rare, or in the background).

Each batch is one transaction, so a batch's failure fails its requests (they answer 500
and were not recorded), never other batches. At most `batch_size_max` items per batch and
`queue_size_max` waiting; beyond that, `idempotency_store_busy` (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.http.idempotency_models import (
    FINGERPRINT_LENGTH,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    IDEMPOTENCY_SCOPE_LENGTH_MAX,
)
from billfold.kit.http.idempotency_repository import Claim, Completion, IdempotencyRepository
from billfold.kit.http.idempotency_store import (
    IDEMPOTENCY_LEASE_S_DEFAULT,
    IDEMPOTENCY_TTL_S_MIN,
    RESPONSE_BODY_MAX_BYTES_DEFAULT,
    BeginOutcome,
    EarlierFingerprint,
    IdempotencyStore,
    IdempotencyStoreBusy,
    Started,
    StoredResponse,
)
from billfold.kit.ids import new_id

__all__ = [
    "BATCH_SIZE_MAX_DEFAULT",
    "BATCH_SIZE_MAX_LIMIT",
    "QUEUE_SIZE_MAX_DEFAULT",
    "BatchingIdempotencyStore",
]

BATCH_SIZE_MAX_DEFAULT = 1000
BATCH_SIZE_MAX_LIMIT = 2000
"""A claim binds 8 parameters; SQLite and asyncpg take at most 32,766 per statement."""
QUEUE_SIZE_MAX_DEFAULT = 100_000
_NANOSECONDS_PER_SECOND = 1_000_000_000

_Item = TypeVar("_Item")
_Outcome = TypeVar("_Outcome")


@dataclass(slots=True)
class _Waiting(Generic[_Item, _Outcome]):
    item: _Item
    future: asyncio.Future[_Outcome]


class _GroupCommit(Generic[_Item, _Outcome]):
    """Items submitted while a batch is being applied form the next batch: one task
    applies batches one after another, so a batch's size follows the load."""

    def __init__(
        self,
        apply: Callable[[Sequence[_Item]], Awaitable[list[_Outcome]]],
        *,
        batch_size_max: int,
        queue_size_max: int,
    ) -> None:
        self._apply = apply
        self._batch_size_max = batch_size_max
        self._queue_size_max = queue_size_max
        self._queue: list[_Waiting[_Item, _Outcome]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: _Item) -> _Outcome:
        if len(self._queue) >= self._queue_size_max:
            raise IdempotencyStoreBusy("Too many requests are waiting; retry shortly.")
        waiting = _Waiting[_Item, _Outcome](item, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        # Shielded: a caller going away must not cancel the batch it shares with others.
        return await asyncio.shield(waiting.future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._batch_size_max]
                del self._queue[: self._batch_size_max]
                await self._apply_batch(batch)
        finally:
            self._draining = None

    async def _apply_batch(self, batch: list[_Waiting[_Item, _Outcome]]) -> None:
        try:
            outcomes = await self._apply([waiting.item for waiting in batch])
        except Exception as error:  # the batch's transaction failed: so did its requests
            for waiting in batch:
                _fail(waiting.future, error)
            return
        invariant(len(outcomes) == len(batch), "one outcome per item")
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _resolve(waiting.future, outcome)


def _resolve(future: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _fail(future: asyncio.Future[_Outcome], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
        # Its caller may be gone; then nobody retrieves the error, and that is expected.
        future.add_done_callback(lambda done: done.exception())


@dataclass(frozen=True, slots=True)
class _Begin:
    scope: str
    key: str
    fingerprint: str


class BatchingIdempotencyStore(IdempotencyStore):
    """`IdempotencyStore` whose begins and completes share transactions under load."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        *,
        clock: Clock | None = None,
        ttl_s: int = IDEMPOTENCY_TTL_S_MIN,
        lease_s: int = IDEMPOTENCY_LEASE_S_DEFAULT,
        response_body_max_bytes: int = RESPONSE_BODY_MAX_BYTES_DEFAULT,
        batch_size_max: int = BATCH_SIZE_MAX_DEFAULT,
        queue_size_max: int = QUEUE_SIZE_MAX_DEFAULT,
    ) -> None:
        super().__init__(
            unit_of_work,
            clock=clock,
            ttl_s=ttl_s,
            lease_s=lease_s,
            response_body_max_bytes=response_body_max_bytes,
        )
        if not 1 <= batch_size_max <= BATCH_SIZE_MAX_LIMIT:
            raise ValueError(f"batch_size_max must be 1..{BATCH_SIZE_MAX_LIMIT}")
        if not 1 <= queue_size_max <= 10_000_000:
            raise ValueError("queue_size_max must be 1..10000000")
        self._ttl_s, self._lease_s = ttl_s, lease_s
        self._begins = _GroupCommit[_Begin, Started | None](
            self._claim_batch, batch_size_max=batch_size_max, queue_size_max=queue_size_max
        )
        self._completes = _GroupCommit[tuple[Started, StoredResponse], bool](
            self._complete_batch, batch_size_max=batch_size_max, queue_size_max=queue_size_max
        )

    async def begin(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        earlier_fingerprint: EarlierFingerprint | None = None,
    ) -> BeginOutcome:
        # Checked here, not in the batch, where one bad item would fail its neighbours.
        if not 1 <= len(scope) <= IDEMPOTENCY_SCOPE_LENGTH_MAX:
            raise ValueError(f"scope must be 1..{IDEMPOTENCY_SCOPE_LENGTH_MAX} characters")
        if not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
            raise ValueError(f"key must be 1..{IDEMPOTENCY_KEY_LENGTH_MAX} characters")
        invariant(len(fingerprint) == FINGERPRINT_LENGTH, "fingerprint is a SHA-256 in hex")
        started = await self._begins.submit(_Begin(scope, key, fingerprint))
        if started is not None:
            return started
        # The key exists (or a neighbour in the batch claimed it first): decide in full.
        return await super().begin(
            scope=scope, key=key, fingerprint=fingerprint, earlier_fingerprint=earlier_fingerprint
        )

    async def complete(self, started: Started, response: StoredResponse) -> bool:
        invariant(
            len(response.body) <= self.response_body_max_bytes,
            "the caller bounds stored responses by response_body_max_bytes",
        )
        return await self._completes.submit((started, response))

    async def _claim_batch(self, begins: Sequence[_Begin]) -> list[Started | None]:
        """Insert the batch's new keys; Started for each one created, None for the rest."""
        now_ns = self._clock.now_ns()
        claims: dict[tuple[str, str], Claim] = {}
        for begin in begins:
            claims.setdefault((begin.scope, begin.key), self._claim(begin, now_ns))
        async with self._unit_of_work.begin() as session:
            created = await IdempotencyRepository(session).insert_many_if_absent(
                list(claims.values())
            )
        outcomes: list[Started | None] = []
        for begin in begins:
            claim = claims.pop((begin.scope, begin.key), None)  # the first one only
            if claim is not None and (claim.scope, claim.key) in created:
                outcomes.append(Started(claim.scope, claim.key, claim.attempt_id))
            else:
                outcomes.append(None)
        return outcomes

    def _claim(self, begin: _Begin, now_ns: int) -> Claim:
        return Claim(
            scope=begin.scope,
            key=begin.key,
            fingerprint=begin.fingerprint,
            attempt_id=new_id().hex,
            now_ns=now_ns,
            locked_until=now_ns + self._lease_s * _NANOSECONDS_PER_SECOND,
            expires_at=now_ns + self._ttl_s * _NANOSECONDS_PER_SECOND,
        )

    async def _complete_batch(
        self, completions: Sequence[tuple[Started, StoredResponse]]
    ) -> list[bool]:
        rows = [
            Completion(
                scope=started.scope,
                key=started.key,
                attempt_id=started.attempt_id,
                status=response.status,
                headers=[[name, value] for name, value in response.headers],
                body=response.body,
            )
            for started, response in completions
        ]
        async with self._unit_of_work.begin() as session:
            kept = await IdempotencyRepository(session).complete_many(rows)
        return [row in kept for row in rows]

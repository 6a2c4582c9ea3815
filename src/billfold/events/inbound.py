"""Inbound notifications (a provider telling us a payment settled, …): stored first, then
processed by the worker, once.

The receiving route authenticates the sender, then calls `store_inbound` in its unit of
work and answers 2xx: a resend of the same (source, external id) is stored once. The
worker claims due notifications and runs the handler registered for their source in the
same transaction that marks them processed, so a handler's database effects happen
exactly once. A handler that raises is retried on the webhook schedule, then `failed`.
A handler that knows the notification can never apply (a deterministic refusal: the
same payload meets the same refusal on every attempt) raises `PermanentInboundError`
with the reason instead: the notification is `failed` at once, the reason in
`last_error`, and logged as a warning (`events.inbound_rejected`) for an operator.
Anything else, a database error above all, may pass: it is retried.

    registry.register("sandbox-psp", handle_sandbox_notification)
    async def handle_sandbox_notification(session, payload): ...

A handler that must open its own transactions (one that drives the ledger, or any work
that cannot share the marking transaction: on SQLite that transaction holds the only write
lock) is registered with `register_standalone`. It runs between two transactions: the
claim leases the notification for `STANDALONE_LEASE_S` (so no other worker takes it
meanwhile), the handler runs, then the notification is marked. A crash in between leaves
it leased, and it runs again once the lease ends: such a handler must be idempotent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import repository
from billfold.events.models import InboundEvent
from billfold.events.webhooks import next_delay_s
from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import ValidationFailed
from billfold.kit.ids import new_id

__all__ = [
    "STANDALONE_LEASE_S",
    "InboundHandler",
    "InboundProcessor",
    "InboundRegistry",
    "InvalidInbound",
    "PermanentInboundError",
    "StandaloneInboundHandler",
    "StoredInbound",
    "store_inbound",
]

log = structlog.get_logger(__name__)

InboundHandler = Callable[[AsyncSession, Mapping[str, Any]], Awaitable[None]]
StandaloneInboundHandler = Callable[[Mapping[str, Any]], Awaitable[None]]
STANDALONE_LEASE_S = 60
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
EXTERNAL_ID_LENGTH_MAX = 255
ERROR_LENGTH_MAX = 1024


class InvalidInbound(ValidationFailed):
    code = "invalid_inbound_event"
    title = "Invalid inbound notification"


class PermanentInboundError(Exception):
    """Raised by a handler: this notification can never apply, whatever a retry finds (the
    provider's word contradicts what is recorded for good). Retrying it for days only
    repeats the refusal and hides it among passing errors; it is marked `failed` at once,
    with `reason` as its `last_error`. Not for errors that may pass (an object not yet
    visible, a lock, a database or network error): those must stay retryable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredInbound:
    id: Any
    duplicate: bool
    """True when this (source, external id) had been stored before."""


async def store_inbound(
    session: AsyncSession,
    *,
    source: str,
    external_id: str,
    payload: Mapping[str, Any],
    now_ns: int,
) -> StoredInbound:
    """Store a notification for the worker; a second copy of it changes nothing."""
    if not SOURCE_PATTERN.match(source):
        raise InvalidInbound("a source is 1-64 lowercase letters, digits, '.', '_' or '-'")
    if not external_id or len(external_id) > EXTERNAL_ID_LENGTH_MAX:
        raise InvalidInbound(f"an external id is 1-{EXTERNAL_ID_LENGTH_MAX} characters")
    existing = await repository.inbound_by_external_id(
        session, source=source, external_id=external_id
    )
    if existing is not None:
        return StoredInbound(id=existing.id, duplicate=True)
    row = InboundEvent(
        id=new_id(),
        source=source,
        external_id=external_id,
        payload=dict(payload),
        status="received",
        attempts=0,
        next_attempt_at=now_ns,
        last_error=None,
        received_at=now_ns,
        processed_at=None,
    )
    session.add(row)
    await session.flush()
    return StoredInbound(id=row.id, duplicate=False)


class InboundRegistry:
    """One handler per source."""

    def __init__(self) -> None:
        self._handlers: dict[str, InboundHandler] = {}
        self._standalone: dict[str, StandaloneInboundHandler] = {}

    def register(self, source: str, handler: InboundHandler) -> None:
        """`handler` runs in the transaction that marks the notification processed."""
        self._check_new(source)
        self._handlers[source] = handler

    def register_standalone(self, source: str, handler: StandaloneInboundHandler) -> None:
        """`handler` opens its own transactions and must be idempotent (see above)."""
        self._check_new(source)
        self._standalone[source] = handler

    def _check_new(self, source: str) -> None:
        if not SOURCE_PATTERN.match(source):
            raise ValueError(f"invalid inbound source {source!r}")
        if source in self._handlers or source in self._standalone:
            raise ValueError(f"a handler for {source!r} is registered already")

    def handler(self, source: str) -> InboundHandler | None:
        return self._handlers.get(source)

    def standalone(self, source: str) -> StandaloneInboundHandler | None:
        return self._standalone.get(source)


class InboundProcessor:
    """Processes due notifications one at a time, each in its own transaction."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        registry: InboundRegistry,
        *,
        clock: Clock,
        row_locks: bool,
        batch_size_max: int,
        rng: random.Random | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._registry = registry
        self._clock = clock
        self._row_locks = row_locks
        self._batch_size_max = batch_size_max
        self._rng = rng or random.Random()

    async def run_once(self) -> int:
        if not self._row_locks:  # SQLite: look without the write lock first
            async with self._unit_of_work.read() as session:
                if not await repository.has_due_inbound(session, now_ns=self._clock.now_ns()):
                    return 0
        done = 0
        for _ in range(self._batch_size_max):
            if not await self._process_one():
                break
            done += 1
        return done

    async def _process_one(self) -> bool:
        now_ns = self._clock.now_ns()
        async with self._unit_of_work.begin() as session:
            claimed = await repository.claim_due_inbound(
                session, now_ns=now_ns, limit=1, lock=self._row_locks
            )
            if not claimed:
                return False
            row = claimed[0]
            standalone = self._registry.standalone(row.source)
            if standalone is not None:  # leased now, run below, marked after
                row.next_attempt_at = now_ns + STANDALONE_LEASE_S * NANOSECONDS_PER_SECOND
                row_id, source, payload = row.id, row.source, dict(row.payload)
            else:
                await self._run_in(session, row, now_ns)
                return True
        outcome = _Outcome()
        try:
            await standalone(payload)
        except PermanentInboundError as rejection:
            outcome = _rejected(source, rejection)
        except Exception as failure:
            outcome = _failed(source, failure)
        async with self._unit_of_work.begin() as session:
            leased = await session.get(InboundEvent, row_id)
            if leased is not None and leased.status == "received":
                self._mark(leased, outcome, self._clock.now_ns())
        return True

    async def _run_in(self, session: AsyncSession, row: InboundEvent, now_ns: int) -> None:
        handler = self._registry.handler(row.source)
        outcome = _Outcome()
        if handler is None:
            outcome = _Outcome(f"no handler is registered for source {row.source!r}")
        else:
            try:
                async with session.begin_nested():  # the handler's writes, or none
                    await handler(session, row.payload)
            except PermanentInboundError as rejection:
                outcome = _rejected(row.source, rejection)
            except Exception as failure:
                outcome = _failed(row.source, failure)
        self._mark(row, outcome, now_ns)

    def _mark(self, row: InboundEvent, outcome: _Outcome, now_ns: int) -> None:
        row.attempts += 1
        if outcome.error is None:
            row.status = "processed"
            row.processed_at = now_ns
            row.last_error = None
            return
        row.last_error = outcome.error[:ERROR_LENGTH_MAX]
        delay = None if outcome.final else next_delay_s(row.attempts, self._rng)
        if delay is None:
            row.status = "failed"
        else:
            row.next_attempt_at = now_ns + int(delay * NANOSECONDS_PER_SECOND)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What an attempt came to: no `error`, processed; else retried on the schedule, or
    `failed` at once when `final` (the handler rejected it)."""

    error: str | None = None
    final: bool = False


def _rejected(source: str, rejection: PermanentInboundError) -> _Outcome:
    """A warning, not an exception's trace: the handler refused it on purpose, and the
    reason is all an operator needs."""
    log.warning("events.inbound_rejected", source=source, reason=rejection.reason)
    return _Outcome(rejection.reason, final=True)


def _failed(source: str, failure: Exception) -> _Outcome:
    log.exception("events.inbound_failed", source=source)
    return _Outcome(f"{type(failure).__name__}: {failure}")

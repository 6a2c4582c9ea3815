"""Inbound notifications: stored once per (source, external id), processed once by the
worker in the transaction that marks them processed, retried on failure, then failed; a
notification its handler rejects (`PermanentInboundError`: it can never apply) fails at
once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from billfold.events.inbound import (
    STANDALONE_LEASE_S,
    InboundRegistry,
    InvalidInbound,
    PermanentInboundError,
    store_inbound,
)
from billfold.events.models import InboundEvent
from billfold.events.outbox import emit
from billfold.events.webhooks import ATTEMPTS_MAX
from billfold.kit.auth import Mode
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.ids import new_id
from events.events_support import Harness, harness, tenant_event_ids

pytestmark = pytest.mark.anyio


async def store(h: Harness, external_id: str, payload: Mapping[str, Any]) -> bool:
    async with h.unit_of_work.begin() as session:
        stored = await store_inbound(
            session, source="sandbox-psp", external_id=external_id, payload=payload, now_ns=1
        )
    return stored.duplicate


async def rows(h: Harness) -> list[InboundEvent]:
    async with h.unit_of_work.begin() as session:
        return list(await session.scalars(select(InboundEvent)))


async def test_a_notification_is_stored_once_and_handled_once(isolated_database_url: str) -> None:
    registry = InboundRegistry()
    handled: list[Mapping[str, Any]] = []
    async with harness(isolated_database_url, inbound=registry, clock=ManualClock()) as h:
        tenant_id = h.tenant_id

        async def handler(session: Any, payload: Mapping[str, Any]) -> None:
            handled.append(payload)
            aggregate = new_id()
            emit(  # a handler's state change and its event commit with "processed"
                session,
                tenant_id=tenant_id,
                mode=Mode.LIVE,
                type="com.billfold.payment.settled.v1",
                subject=f"pay_{aggregate.hex}",
                aggregate_id=aggregate,
                data=dict(payload),
            )

        registry.register("sandbox-psp", handler)
        assert await store(h, "evt-1", {"status": "settled"}) is False
        assert await store(h, "evt-1", {"status": "settled"}) is True
        await h.worker.drain()
        await h.worker.drain()
        [row] = await rows(h)
        assert row.status == "processed" and row.attempts == 1
        assert handled == [{"status": "settled"}]
        assert len(await tenant_event_ids(h.unit_of_work, tenant_id)) == 1


async def test_a_failing_handler_is_retried_then_marked_failed(isolated_database_url: str) -> None:
    registry = InboundRegistry()
    clock = ManualClock()
    calls = []
    async with harness(isolated_database_url, inbound=registry, clock=clock) as h:
        tenant_id = h.tenant_id

        async def broken(session: Any, payload: Mapping[str, Any]) -> None:
            calls.append(payload)
            aggregate = new_id()
            emit(
                session,
                tenant_id=tenant_id,
                mode=Mode.LIVE,
                type="com.billfold.payment.settled.v1",
                subject=f"pay_{aggregate.hex}",
                aggregate_id=aggregate,
                data={},
            )
            raise ValueError("provider payload not understood")

        registry.register("sandbox-psp", broken)
        await store(h, "evt-2", {"status": "odd"})
        for _ in range(ATTEMPTS_MAX + 2):
            await h.worker.drain()
            clock.advance(seconds=90_000)
        [row] = await rows(h)
        assert row.status == "failed" and row.attempts == ATTEMPTS_MAX
        assert "not understood" in (row.last_error or "")
        assert len(calls) == ATTEMPTS_MAX
        assert await tenant_event_ids(h.unit_of_work, tenant_id) == [], "its writes rolled back"


async def test_bad_notifications_and_registrations_are_refused(isolated_database_url: str) -> None:
    registry = InboundRegistry()
    with pytest.raises(ValueError, match="invalid"):
        registry.register("Bad Source!", lambda *_: None)  # type: ignore[arg-type,return-value]
    async with harness(isolated_database_url) as h, h.unit_of_work.begin() as session:
        with pytest.raises(InvalidInbound):
            await store_inbound(session, source="UPPER", external_id="x", payload={}, now_ns=1)
        with pytest.raises(InvalidInbound):
            await store_inbound(session, source="psp", external_id="", payload={}, now_ns=1)
        with pytest.raises(InvalidInbound):
            await store_inbound(session, source="psp", external_id="x" * 256, payload={}, now_ns=1)


async def test_a_standalone_handler_runs_outside_the_marking_transaction_under_a_lease(
    isolated_database_url: str,
) -> None:
    """A handler that opens its own transactions (on SQLite the marking one would hold the
    write lock) runs between the claim and the mark; meanwhile the row is leased, a crash
    leaves it to be run again after the lease, and a failure is retried on the schedule."""
    registry = InboundRegistry()
    clock = ManualClock()
    seen: list[tuple[str, int]] = []
    async with harness(isolated_database_url, inbound=registry, clock=clock) as h:

        async def standalone(payload: Mapping[str, Any]) -> None:
            async with h.unit_of_work.begin() as session:  # its own write transaction
                row = await session.scalar(
                    select(InboundEvent).where(InboundEvent.external_id == payload["id"])
                )
                assert row is not None
                seen.append((row.status, row.next_attempt_at))
            if payload["fail"] and len(seen) == 1:
                raise RuntimeError("ledger unavailable")

        registry.register_standalone("sandbox-psp", standalone)
        with pytest.raises(ValueError, match="registered already"):
            registry.register("sandbox-psp", standalone)  # type: ignore[arg-type]
        await store(h, "evt-s", {"id": "evt-s", "fail": True})
        now = clock.now_ns()
        await h.worker.drain()
        assert seen == [("received", now + STANDALONE_LEASE_S * NANOSECONDS_PER_SECOND)]
        [row] = await rows(h)
        assert row.status == "received" and row.attempts == 1, "retried on the schedule"
        assert "ledger unavailable" in (row.last_error or "")
        clock.advance(seconds=90_000)
        await h.worker.drain()
        [row] = await rows(h)
        assert row.status == "processed" and row.attempts == 2 and len(seen) == 2

        # A crash after the claim: the lease runs out, then another worker runs it again.
        await store(h, "evt-t", {"id": "evt-t", "fail": False})
        async with h.unit_of_work.begin() as session:
            leased = await session.scalar(
                select(InboundEvent).where(InboundEvent.external_id == "evt-t")
            )
            assert leased is not None
            leased.next_attempt_at = clock.now_ns() + STANDALONE_LEASE_S * NANOSECONDS_PER_SECOND
        await h.worker.drain()
        assert len(seen) == 2, "leased: nobody takes it"
        clock.advance(seconds=STANDALONE_LEASE_S)
        await h.worker.drain()
        assert len(seen) == 3
        assert sorted(r.status for r in await rows(h)) == ["processed", "processed"]


async def test_a_rejected_notification_fails_at_once_and_is_not_retried(
    isolated_database_url: str,
) -> None:
    """A handler that says the notification can never apply (`PermanentInboundError`), in
    the marking transaction or standalone, has it marked `failed` on the first attempt with
    the reason, logged as a warning: not retried for days with the same outcome. The
    in-transaction handler's writes roll back as for any failure."""
    registry = InboundRegistry()
    clock = ManualClock()
    calls: list[str] = []
    async with harness(isolated_database_url, inbound=registry, clock=clock) as h:
        tenant_id = h.tenant_id

        async def refusing(session: Any, payload: Mapping[str, Any]) -> None:
            calls.append("in_transaction")
            aggregate = new_id()
            emit(
                session,
                tenant_id=tenant_id,
                mode=Mode.LIVE,
                type="com.billfold.payment.settled.v1",
                subject=f"pay_{aggregate.hex}",
                aggregate_id=aggregate,
                data={},
            )
            raise PermanentInboundError("the dispute claims 900, more than the 500 disputable")

        async def refusing_alone(payload: Mapping[str, Any]) -> None:
            calls.append("standalone")
            raise PermanentInboundError("the payment was a withdrawal")

        registry.register("sandbox-psp", refusing)
        registry.register_standalone("other-psp", refusing_alone)
        await store(h, "evt-r", {"dispute": "dp_1"})
        async with h.unit_of_work.begin() as session:
            await store_inbound(
                session, source="other-psp", external_id="evt-a", payload={}, now_ns=1
            )
        with capture_logs() as logs:
            await h.worker.drain()
        by_source = {row.source: row for row in await rows(h)}
        refused, alone = by_source["sandbox-psp"], by_source["other-psp"]
        assert (refused.status, refused.attempts) == ("failed", 1)
        assert refused.last_error == "the dispute claims 900, more than the 500 disputable"
        assert (alone.status, alone.attempts) == ("failed", 1)
        assert alone.last_error == "the payment was a withdrawal"
        rejected = [entry for entry in logs if entry["event"] == "events.inbound_rejected"]
        assert {(e["source"], e["log_level"]) for e in rejected} == {
            ("sandbox-psp", "warning"),
            ("other-psp", "warning"),
        }
        assert await tenant_event_ids(h.unit_of_work, tenant_id) == [], "its writes rolled back"
        for _ in range(3):
            clock.advance(seconds=90_000)
            await h.worker.drain()
        assert sorted(calls) == ["in_transaction", "standalone"], "never tried again"


async def test_a_transient_failure_is_still_retried(isolated_database_url: str) -> None:
    """Anything but `PermanentInboundError` (here a database error) keeps the retry
    schedule."""
    registry = InboundRegistry()
    clock = ManualClock()
    calls: list[str] = []
    async with harness(isolated_database_url, inbound=registry, clock=clock) as h:

        async def busy(payload: Mapping[str, Any]) -> None:
            calls.append("busy")
            if len(calls) == 1:
                raise OperationalError("UPDATE payments", {}, Exception("database is locked"))

        registry.register_standalone("sandbox-psp", busy)
        await store(h, "evt-b", {})
        await h.worker.drain()
        [row] = await rows(h)
        assert (row.status, row.attempts) == ("received", 1)
        assert "database is locked" in (row.last_error or "")
        clock.advance(seconds=90_000)
        await h.worker.drain()
        [row] = await rows(h)
        assert (row.status, row.attempts, row.last_error) == ("processed", 2, None)

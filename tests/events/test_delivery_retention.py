"""The delivery log keeps succeeded and dead-lettered deliveries, and their attempts, for
`webhooks_delivery_retention_days`; pending ones stay whatever their age, and the events
themselves stay (they can be replayed)."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.app import create_app
from billfold.events import repository
from billfold.events.models import OutboxEvent, WebhookAttempt, WebhookDelivery
from billfold.events.webhooks import ATTEMPTS_MAX
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.ids import new_id
from billfold.kit.settings import Settings
from events.events_support import Receiver, Reply, add_endpoint, deliveries, emit_event, harness
from identity.identity_support import run_in_unit_of_work

DAY_S = 86_400


@pytest.mark.anyio
async def test_completed_deliveries_and_their_attempts_go_after_the_retention(
    isolated_database_url: str,
) -> None:
    clock = ManualClock(start_ns=time.time_ns())
    failing = Receiver(lambda _: Reply(status=500))
    with Receiver() as receiver, failing:
        async with harness(
            isolated_database_url,
            clock=clock,
            webhooks_delivery_retention_days=30,
            webhooks_disable_after_days=0,  # the failing endpoint fails for weeks: keep it
        ) as h:
            await add_endpoint(h, receiver.url, event_types=["com.billfold.payment.captured.v1"])
            await add_endpoint(h, failing.url, event_types=["com.billfold.payment.failed.v1"])
            old = await emit_event(h)
            await emit_event(h, kind="payment.failed")
            await h.worker.drain()
            for _ in range(ATTEMPTS_MAX):  # every retry comes due: dead-lettered
                clock.advance(seconds=2 * DAY_S)
                await h.worker.drain()
            waiting = await emit_event(h, kind="payment.failed")  # retried, so pending
            await h.worker.drain()
            clock.advance(seconds=31 * DAY_S)
            recent = await emit_event(h)
            await h.worker.drain()
            statuses = sorted(d.status for d in await deliveries(h))
            assert statuses == ["dead", "pending", "succeeded", "succeeded"]

            assert await h.worker.purge_delivery_log() == 2

            kept = await deliveries(h)
            assert sorted((d.status, d.event_id) for d in kept) == sorted(
                [("pending", waiting), ("succeeded", recent)]
            )
            async with h.unit_of_work.begin() as session:
                attempted = set(await session.scalars(select(WebhookAttempt.delivery_id)))
                events = await session.scalar(
                    select(func.count()).select_from(OutboxEvent).where(OutboxEvent.id == old)
                )
            assert attempted == {d.id for d in kept}
            assert events == 1
            assert await h.worker.purge_delivery_log() == 0


@pytest.mark.anyio
async def test_a_retention_of_zero_keeps_the_log(isolated_database_url: str) -> None:
    clock = ManualClock(start_ns=time.time_ns())
    with Receiver() as receiver:
        async with harness(
            isolated_database_url, clock=clock, webhooks_delivery_retention_days=0
        ) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            clock.advance(seconds=3650 * DAY_S)
            assert await h.worker.purge_delivery_log() == 0
            assert [d.status for d in await deliveries(h)] == ["succeeded"]


def test_the_embedded_worker_purges_its_delivery_log(isolated_database_url: str) -> None:
    """`billfold serve` alone (the embedded worker) purges the log too, every
    `idempotency_purge_interval_s`."""
    completed_ns = time.time_ns() - 31 * DAY_S * NANOSECONDS_PER_SECOND
    delivery_id = new_id()

    async def old_delivery(session: AsyncSession) -> None:
        endpoint = new_id()
        await repository.insert_deliveries(
            session,
            [
                {
                    "id": delivery_id,
                    "endpoint_id": endpoint,
                    "tenant_id": endpoint,
                    "event_id": new_id(),
                    "event_seq": 1,
                    "aggregate_id": new_id(),
                    "status": "succeeded",
                    "attempts": 1,
                    "next_attempt_at": completed_ns,
                    "leased_until": None,
                    "last_status_code": 204,
                    "replay": 0,
                    "created_at": completed_ns,
                    "completed_at": completed_ns,
                }
            ],
        )

    async def still_there(session: AsyncSession) -> uuid.UUID | None:
        found: uuid.UUID | None = await session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.id == delivery_id)
        )
        return found

    run_in_unit_of_work(isolated_database_url, old_delivery)
    settings = Settings(
        database_url=isolated_database_url,
        embedded_worker=True,  # the suite's default is off
        idempotency_purge_interval_s=1,
        webhooks_delivery_retention_days=30,
    )
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 15
        while run_in_unit_of_work(isolated_database_url, still_there) is not None:
            assert time.monotonic() < deadline, "the delivery log was not purged"
            time.sleep(0.2)

"""Issue 5: provider notifications are stored by the route (202) and applied by the worker's
inbound processor, once, even across a restart between the two."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from billfold.events.models import InboundEvent
from billfold.payments.flows.notifications import notification_source
from payments.payments_support import World, fee_of


def _stored(world: World, external_id: str) -> list[InboundEvent]:
    async def rows() -> list[InboundEvent]:
        async with world.app.state.unit_of_work.read() as session:
            return list(
                await session.scalars(
                    select(InboundEvent).where(
                        InboundEvent.source == notification_source("sandbox_card"),
                        InboundEvent.external_id == external_id,
                    )
                )
            )

    return world.client.portal.call(rows)


def test_a_stored_notification_is_applied_only_when_the_worker_runs(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [notification] = world.sender.take()
        receipt = world.post_notification(notification).json()
        assert receipt["duplicate"] is False and receipt["notification_id"].startswith("ntf_")
        event_id = _event_id(world, receipt)
        [row] = _stored(world, event_id)
        assert row.status == "received" and row.attempts == 0
        assert world.payment(payment["id"])["state"] == "processing"
        assert world.wallet(ann)["available"] == 0

        world.process_inbound([receipt["notification_id"]])
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)
        [row] = _stored(world, event_id)
        assert row.status == "processed" and row.attempts == 1


def test_a_notification_stored_before_a_crash_is_applied_after_restart(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [notification] = world.sender.take()
        receipt = world.post_notification(notification).json()
        world.client.__exit__(None, None, None)  # the process goes before any worker ran
        world.__enter__()  # a new one on the same database: a new app, registry, runtime
        assert world.payment(payment["id"])["state"] == "processing"
        world.process_inbound([receipt["notification_id"]])
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)


def test_a_resent_notification_is_stored_once_and_moves_money_once(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [notification] = world.sender.take()
        first = world.post_notification(notification).json()
        again = world.post_notification(notification).json()
        assert again == {"notification_id": first["notification_id"], "duplicate": True}
        world.process_inbound([first["notification_id"]])
        late = world.post_notification(notification).json()  # after it was applied
        assert late == again
        world.process_inbound()
        assert len(_stored(world, _event_id(world, first))) == 1
        assert world.payment(payment["id"])["state"] == "succeeded"
        assert world.wallet(ann)["available"] == 5_000 - fee_of(5_000)


def test_a_bad_signature_is_refused_and_not_stored(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        world.top_up(ann, 5_000)
        [notification] = world.sender.take()
        headers = dict.fromkeys(notification.headers, "t=1,v1=00")
        response = world.client.post(
            f"/v1/connectors/{notification.provider}/notifications",
            content=notification.body,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 401, response.text

        async def count() -> int:
            async with world.app.state.unit_of_work.read() as session:
                total = await session.scalar(select(func.count()).select_from(InboundEvent))
                return int(total or 0)

        before = world.client.portal.call(count)
        world.post_notification(notification)
        assert world.client.portal.call(count) == before + 1


def _event_id(world: World, receipt: dict[str, str]) -> str:
    row_id = uuid.UUID(hex=receipt["notification_id"].partition("_")[2])

    async def external_id() -> str:
        async with world.app.state.unit_of_work.read() as session:
            row = await session.get(InboundEvent, row_id)
            assert row is not None
            return row.external_id

    return world.client.portal.call(external_id)

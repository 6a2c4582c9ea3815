"""A replay delivers only what an endpoint subscribes to: naming an endpoint whose
`event_types` leave the event's type out is refused (409 `event_not_subscribed` over HTTP,
exit 1 from `billfold events replay`) and queues nothing; the command also exits 1 when no
enabled endpoint wants the event, where it used to print a warning and exit 0."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events import service
from billfold.events.models import WebhookDelivery
from billfold.events.outbox import emit
from billfold.kit.auth import Mode
from billfold.kit.ids import new_id
from billfold.migrations import upgrade
from cli_support import Ran, billfold
from events.events_api_support import auth, client, keys, post_transfer, wait_for
from events.events_support import Receiver
from identity.identity_support import bootstrap_tenant, run_in_unit_of_work
from ledger.ledger_api_support import assert_problem

CAPTURED = "com.billfold.payment.captured.v1"
REFUNDED = "com.billfold.payment.refunded.v1"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_a_replay_to_an_endpoint_that_filters_the_type_out_is_refused(
    database_url: str, receiver: Receiver
) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url) as api:
        wanted = api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["com.billfold.transfer.posted.v1"]},
            headers=auth(full),
        ).json()
        filtered = api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": [CAPTURED]},
            headers=auth(full),
        ).json()
        transfer_id = post_transfer(api, full)
        wait_for(lambda: len(receiver.received) == 1)
        events = api.get("/v1/events", headers=auth(reader)).json()["items"]
        [event] = [e for e in events if e["subject"] == transfer_id]
        path = f"/v1/webhook-endpoints/{filtered['id']}/deliveries"
        refused = api.post(
            f"/v1/events/{event['id']}/replay",
            json={"endpoint_id": filtered["id"]},
            headers=auth(full),
        )
        body = assert_problem(refused, 409, "event_not_subscribed")
        assert body["endpoint_id"] == filtered["id"]
        assert body["event_type"] == "com.billfold.transfer.posted.v1"
        assert api.get(path, headers=auth(reader)).json()["items"] == []
        # Every endpoint that wants it, without naming one: only the subscribed one.
        untargeted = api.post(f"/v1/events/{event['id']}/replay", json={}, headers=auth(full))
        assert untargeted.status_code == 202 and len(untargeted.json()["delivery_ids"]) == 1
        named = api.post(
            f"/v1/events/{event['id']}/replay",
            json={"endpoint_id": wanted["id"]},
            headers=auth(full),
        )
        assert named.status_code == 202 and len(named.json()["delivery_ids"]) == 1
        wait_for(lambda: len(receiver.received) == 3)
        assert api.get(path, headers=auth(reader)).json()["items"] == []


def _billfold(database_url: str, *arguments: str) -> Ran:
    return billfold(
        *arguments,
        environment={
            "BILLFOLD_DATABASE_URL": database_url,
            "BILLFOLD_WEBHOOKS_ALLOW_PRIVATE": "true",
        },
    )


def _prepare(database_url: str, tenant_id: uuid.UUID, url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A live endpoint for captured payments only, and a refunded-payment event."""
    aggregate = new_id()

    async def prepare(session: AsyncSession) -> tuple[uuid.UUID, uuid.UUID]:
        endpoint = await service.create_endpoint(
            session,
            scope=service.Scope(tenant_id=tenant_id, mode=Mode.LIVE),
            url=url,
            description="cli",
            event_types=[CAPTURED],
            allow_private=True,
            endpoints_max=20,
            now_ns=time.time_ns(),
        )
        event_id = emit(
            session,
            tenant_id=tenant_id,
            mode=Mode.LIVE,
            type=REFUNDED,
            subject=f"pay_{aggregate.hex}",
            aggregate_id=aggregate,
            data={"amount": "5"},
        )
        return endpoint.id, event_id

    return run_in_unit_of_work(database_url, prepare)


@pytest.mark.slow
def test_the_command_exits_1_when_nothing_is_queued(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cli.db"
    upgrade(database_url)
    tenant_id = bootstrap_tenant(database_url, "CLI").tenant.id
    with Receiver() as receiver:
        endpoint_id, event_id = _prepare(database_url, tenant_id, receiver.url)
        assert _billfold(database_url, "worker", "--drain").returncode == 0
        assert receiver.received == []  # the endpoint filters refunds out
        replay = [
            "events", "replay", f"evt_{event_id.hex}",
            "--tenant", f"ten_{tenant_id.hex}", "--mode", "live",
        ]  # fmt: skip
        named = _billfold(database_url, *replay, "--endpoint", f"whe_{endpoint_id.hex}")
        assert named.returncode == 1 and "event_not_subscribed" in named.stderr
        untargeted = _billfold(database_url, *replay)
        assert untargeted.returncode == 1, untargeted.stdout
        assert "No enabled endpoint wants this event" in untargeted.stderr

        async def deliveries(session: AsyncSession) -> int:
            found = await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
            )
            return len(list(found))

        assert run_in_unit_of_work(database_url, deliveries) == 0
        assert _billfold(database_url, "worker", "--drain").returncode == 0
        assert receiver.received == []

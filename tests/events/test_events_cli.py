"""`billfold worker --drain` delivers what is due, and `billfold events replay` queues an
event again; end to end on a SQLite file with a real receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
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
from events.events_support import Receiver
from identity.identity_support import bootstrap_tenant, run_in_unit_of_work

pytestmark = pytest.mark.slow


def _billfold(database_url: str, *arguments: str) -> Ran:
    return billfold(
        *arguments,
        environment={
            "BILLFOLD_DATABASE_URL": database_url,
            "BILLFOLD_WEBHOOKS_ALLOW_PRIVATE": "true",
        },
    )


def _endpoint_and_event(
    database_url: str, tenant_id: uuid.UUID, url: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A live webhook endpoint at `url` for captured payments, and one such event for it."""
    aggregate = new_id()

    async def prepare(session: AsyncSession) -> tuple[uuid.UUID, uuid.UUID]:
        endpoint = await service.create_endpoint(
            session,
            scope=service.Scope(tenant_id=tenant_id, mode=Mode.LIVE),
            url=url,
            description="cli",
            event_types=["com.billfold.payment.captured.v1"],
            allow_private=True,
            endpoints_max=20,
            now_ns=time.time_ns(),
        )
        event_id = emit(
            session,
            tenant_id=tenant_id,
            mode=Mode.LIVE,
            type="com.billfold.payment.captured.v1",
            subject=f"pay_{aggregate.hex}",
            aggregate_id=aggregate,
            data={"amount": "5"},
        )
        return endpoint.id, event_id

    return run_in_unit_of_work(database_url, prepare)


def test_the_worker_delivers_and_a_replay_delivers_again(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/cli.db"
    upgrade(database_url)
    tenant_id = bootstrap_tenant(database_url, "CLI").tenant.id
    with Receiver() as receiver:
        _, event_id = _endpoint_and_event(database_url, tenant_id, receiver.url)
        drained = _billfold(database_url, "worker", "--drain")
        assert drained.returncode == 0, drained.stderr
        assert len(receiver.received) == 1
        replayed = _billfold(
            database_url,
            "events", "replay", f"evt_{event_id.hex}",
            "--tenant", f"ten_{tenant_id.hex}", "--mode", "live",
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.startswith("delivery  whd_")
        assert _billfold(database_url, "worker", "--drain").returncode == 0
        assert len(receiver.received) == 2
        unknown = _billfold(
            database_url, "events", "replay", f"evt_{'0' * 32}", "--tenant", f"ten_{tenant_id.hex}"
        )
        assert unknown.returncode == 1 and "No such event" in unknown.stderr


def test_a_replay_to_a_disabled_endpoint_is_refused_until_it_is_enabled(tmp_path: Path) -> None:
    """The command goes through the same service as the API: a disabled endpoint named with
    --endpoint exits 1 with the problem's code, and nothing is queued for it."""
    database_url = f"sqlite:///{tmp_path}/cli.db"
    upgrade(database_url)
    tenant_id = bootstrap_tenant(database_url, "CLI").tenant.id
    scope = service.Scope(tenant_id=tenant_id, mode=Mode.LIVE)
    with Receiver() as receiver:
        endpoint_id, event_id = _endpoint_and_event(database_url, tenant_id, receiver.url)
        assert _billfold(database_url, "worker", "--drain").returncode == 0
        assert len(receiver.received) == 1

        def enable(enabled: bool) -> None:
            async def change(session: AsyncSession) -> None:
                await service.update_endpoint(
                    session,
                    scope=scope,
                    endpoint_id=endpoint_id,
                    change=service.EndpointChange(enabled=enabled),
                    allow_private=True,
                    now_ns=time.time_ns(),
                )

            run_in_unit_of_work(database_url, change)

        replay = [
            "events", "replay", f"evt_{event_id.hex}",
            "--tenant", f"ten_{tenant_id.hex}", "--mode", "live",
            "--endpoint", f"whe_{endpoint_id.hex}",
        ]  # fmt: skip
        enable(False)
        refused = _billfold(database_url, *replay)
        assert refused.returncode == 1 and "webhook_endpoint_disabled" in refused.stderr

        async def replays(session: AsyncSession) -> int:
            found = await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
            )
            return len(list(found))

        assert run_in_unit_of_work(database_url, replays) == 1  # the first delivery only
        enable(True)
        replayed = _billfold(database_url, *replay)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.startswith("delivery  whd_")
        assert run_in_unit_of_work(database_url, replays) == 2


def test_sigterm_stops_the_worker_cleanly(tmp_path: Path) -> None:
    """Process managers stop a service with SIGTERM: the worker finishes its rounds, closes
    what it holds and exits 0, rather than being killed by the signal mid-round."""
    database_url = f"sqlite:///{tmp_path}/term.db"
    upgrade(database_url)
    environment = {**os.environ, "BILLFOLD_DATABASE_URL": database_url}
    with subprocess.Popen(
        [sys.executable, "-m", "billfold.cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    ) as process:
        try:
            assert process.stdout is not None
            assert "Billfold worker" in process.stdout.readline()  # printed before it starts
            time.sleep(3)  # its loops are running
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()

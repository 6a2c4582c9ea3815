"""SQLite: the worker's polls look for work in read-only transactions and take the
database's only write lock when there is work, so an idle embedded worker never makes the
API's writes wait (or fail with "database is locked")."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from billfold.events.outbox import emit
from billfold.kit.auth import Mode
from billfold.kit.ids import new_id
from events.events_api_support import EVERYTHING, auth, client
from events.events_support import harness
from identity.identity_support import bootstrap_tenant, create_key
from sqlite_support import write_lock_held

WRITER_TRIES = 300
IDLE_ROUND_S = 10.0
"""Far below the 30 s busy timeout an idle round would wait out if it took the lock."""


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_idle_worker_round_takes_no_write_lock(isolated_database_url: str) -> None:
    async with harness(isolated_database_url) as h:
        await h.worker.drain()
        with write_lock_held(isolated_database_url):
            assert await asyncio.wait_for(h.worker.run_once(), IDLE_ROUND_S) == 0
        async with h.unit_of_work.begin() as session:  # with work, it writes as before
            emit(
                session,
                tenant_id=h.tenant_id,
                mode=Mode.TEST,
                type="com.billfold.payment.captured.v1",
                subject="pay_1",
                aggregate_id=new_id(),
                data={},
            )
        assert await h.worker.run_once() > 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_api_writes_beside_the_embedded_worker_never_hit_a_locked_database(
    isolated_database_url: str,
) -> None:
    tenant = bootstrap_tenant(isolated_database_url, "Busy").tenant.id
    key = create_key(isolated_database_url, tenant_id=tenant, scopes=EVERYTHING).secret
    settings = {
        "events_poll_interval_s": 0.001,  # the worker polls all the time
        "ledger_expiry_interval_s": 3600,  # the other background writers stay quiet
        "payments_resume_interval_s": 3600,
    }
    with client(isolated_database_url, **settings) as api:  # the embedded worker runs
        assert api.app.state.worker is not None  # type: ignore[attr-defined]
        statuses = [
            api.post(
                "/v1/webhook-endpoints",
                json={"url": f"http://127.0.0.1:9/{i}", "description": str(i)},
                headers=auth(key),
            ).status_code
            for i in range(10)
        ]
        # A writer that does not wait at all (busy timeout 0) gets the lock every time:
        # the polling worker never holds it while it finds nothing to do.
        refused: list[str] = []
        for _ in range(WRITER_TRIES):
            writer = sqlite3.connect(
                isolated_database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0
            )
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("ROLLBACK")
            except sqlite3.OperationalError as error:  # "database is locked"
                refused.append(str(error))
            finally:
                writer.close()
            time.sleep(0.002)
    assert statuses == [201] * 10
    assert refused == []

"""`billfold worker` runs the recovery loops too, so servers started without their
embedded worker (`BILLFOLD_EMBEDDED_WORKER=false`, as every test app here) still have held
reviews expire: a lapsed review's hold is voided and the payment fails, by the standalone
worker alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from billfold.kit.settings import Settings
from billfold.risk.types import Action
from billfold.worker import run_worker
from identity.users.users_support import MASTER_KEY
from payments.payments_support import World
from payments.risk_support import lapse
from payments.test_risk_end_to_end import _rule, _send

WAIT_S = 30.0


def _worker_running(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()

    async def run() -> None:
        task = asyncio.create_task(run_worker(settings, drain=False))
        stopping = asyncio.ensure_future(asyncio.to_thread(stop.wait))
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    return thread, stop


def test_the_standalone_worker_expires_a_lapsed_review(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        assert not world.app.state.settings.embedded_worker
        _rule(world, 'kind == "p2p" && amount_major >= 100.0', Action.REVIEW)
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        held = _send(world, ann, bob, 15_000)
        assert held.status_code == 202, held.text
        payment_id = held.json()["id"]
        lapse(world, payment_id)
        settings = Settings(
            database_url=database_url,
            master_key=MASTER_KEY,
            risk_cases_recovery_interval_s=1,
            payments_resume_interval_s=3600,
            ledger_batch_window_ms=0,
            log_level="warning",
        )
        thread, stop = _worker_running(settings)
        payment: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                payment = world.payment(payment_id)
                if payment["state"] != "in_review":
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            thread.join(WAIT_S)
        assert (payment["state"], payment["failure_code"]) == ("failed", "risk_review_expired")
        assert world.wallet(ann) == {"available": 20_000, "pending": 0, "held": 0}
        assert world.wallet(bob)["available"] == 0

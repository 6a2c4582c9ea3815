"""`billfold worker` runs on uvloop, the loop `billfold serve` runs under (uvicorn's)."""

from __future__ import annotations

import asyncio

import pytest

from billfold import worker
from billfold.kit.settings import Settings


def test_the_worker_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, bool]] = []

    async def run_worker(settings: Settings, *, drain: bool) -> None:
        ran.append((type(asyncio.get_running_loop()).__module__.split(".")[0], drain))

    monkeypatch.setattr(worker, "run_worker", run_worker)
    worker.main(Settings(), drain=True)
    assert ran == [("uvloop", True)]

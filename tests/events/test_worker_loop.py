"""`billfold worker` runs on uvloop, the loop `billfold serve` runs under (uvicorn's)."""

from __future__ import annotations

import asyncio
import gc

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


def test_the_worker_runs_with_the_garbage_collector_tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `billfold serve` does: Python's defaults cost a loaded worker 40% of its CPU."""
    seen: list[tuple[int, bool]] = []

    async def run_worker(settings: Settings, *, drain: bool) -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))

    monkeypatch.setattr(worker, "run_worker", run_worker)
    before = gc.get_threshold()
    worker.main(Settings(gc_gen0_threshold=40_000), drain=False)
    assert seen == [(40_000, True)]
    assert gc.get_threshold() == before

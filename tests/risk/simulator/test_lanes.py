"""The driver's scheduling: actions of one lane never overlap and keep their order; lanes
run side by side; every action gets its record, in the scenario's order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from billfold.risk.simulator.driver import _run_lanes
from billfold.risk.simulator.generator import SimulationConfig, generate


def test_lanes_run_in_order_without_overlap_and_in_parallel() -> None:
    actions = generate(SimulationConfig(seed=11, customers=20, merchants=3, hours=6)).actions
    lock = threading.Lock()
    running: dict[str, int] = {}
    order: dict[str, list[int]] = {}
    overlaps: list[str] = []
    busiest = [0]
    advanced = [0]

    def perform(action: Any) -> dict[str, Any]:
        with lock:
            if running.get(action.lane):
                overlaps.append(action.lane)
            running[action.lane] = 1
            order.setdefault(action.lane, []).append(action.index)
            busiest[0] = max(busiest[0], sum(running.values()))
        threading.Event().wait(0.001)
        with lock:
            running[action.lane] = 0
        return {"index": action.index}

    def advance() -> None:
        with lock:
            advanced[0] += 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        records = _run_lanes(pool, actions, perform, window=16, advance=advance)

    assert [record["index"] for record in records] == [action.index for action in actions]
    assert overlaps == []
    assert all(indexes == sorted(indexes) for indexes in order.values())
    assert busiest[0] > 1, "lanes ran side by side"
    assert advanced[0] == len(actions)

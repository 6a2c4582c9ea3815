"""At least once across crashes: a worker killed with SIGKILL in the middle of dispatching
loses no event. The only duplicates are the documented ones: the events of the batch it
was delivering, which the next worker delivers again with the same ids, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from billfold.events.outbox import emit
from billfold.events.types import Event
from billfold.kit.auth import Mode
from billfold.kit.ids import new_id
from events._crash_worker import BATCH_SIZE
from events.events_support import Harness, harness, tenant_event_ids

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WORKER_SCRIPT = Path(__file__).with_name("_crash_worker.py")
EVENTS = 300
AGGREGATES = 30
LINES_BEFORE_KILL = 80
WAIT_S_MAX = 60.0


def _lines(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line cut by the kill is not a delivery
            rows.append((parts[0], parts[1], int(parts[2])))
    return rows


def _kill_mid_dispatch(database_url: str, output: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), database_url, str(output), str(WAIT_S_MAX)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + WAIT_S_MAX
        while len(_lines(output)) < LINES_BEFORE_KILL:
            assert time.monotonic() < deadline, "the worker delivered too little"
            assert process.poll() is None, "the worker exited"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


async def test_a_worker_killed_mid_dispatch_loses_no_event(
    isolated_database_url: str, tmp_path: Path
) -> None:
    output = tmp_path / "delivered.txt"
    async with harness(isolated_database_url) as h:
        aggregates = [new_id() for _ in range(AGGREGATES)]
        for step in range(EVENTS // AGGREGATES):
            async with h.unit_of_work.begin() as session:
                for aggregate in aggregates:
                    emit(
                        session,
                        tenant_id=h.tenant_id,
                        mode=Mode.TEST,
                        type="com.billfold.payment.updated.v1",
                        subject=f"pay_{aggregate.hex}",
                        aggregate_id=aggregate,
                        data={"step": step},
                    )
        await h.worker.drain()  # sequence only: no subscriber yet, nothing is recorded
        await _reset_inprocess_cursors(h)

        _kill_mid_dispatch(isolated_database_url, output)
        killed_lines = _lines(output)

        async def record(event: Event) -> None:
            with output.open("a", encoding="ascii") as file:
                file.write(f"{event.id.hex} {event.aggregate_id.hex} {event.seq}\n")

        h.worker.bus.subscribe(record)
        await h.worker.drain()
        expected = {i.hex for i in await tenant_event_ids(h.unit_of_work, h.tenant_id)}
        keys = {i.hex for i in await tenant_event_ids(h.unit_of_work, h.tenant_id, identity=True)}
    lines = _lines(output)
    resumed = [line for line in lines[len(killed_lines) :] if line[0] not in keys]
    lines = [line for line in lines if line[0] not in keys]  # the bootstrap's API key events
    killed_lines = [line for line in killed_lines if line[0] not in keys]
    assert len(expected) == EVENTS
    assert {event_id for event_id, _, _ in lines} == expected, "an event was lost"
    counts = Counter(event_id for event_id, _, _ in lines)
    duplicated = {event_id for event_id, count in counts.items() if count > 1}
    assert all(count <= 2 for count in counts.values())
    assert len(duplicated) <= BATCH_SIZE, "only the batch in flight is delivered again"
    assert duplicated <= {event_id for event_id, _, _ in killed_lines}
    for run in (killed_lines, resumed):
        for aggregate in {a for _, a, _ in run}:
            seqs = [seq for _, a, seq in run if a == aggregate]
            assert seqs == sorted(seqs), "order per aggregate"


async def _reset_inprocess_cursors(h: Harness) -> None:
    """The harness's drain moved the in-process cursors with no subscriber listening; start
    them over so the killed worker has every event to deliver."""
    from sqlalchemy import update

    from billfold.events.models import EventCursor

    async with h.unit_of_work.begin() as session:
        await session.execute(
            update(EventCursor).where(EventCursor.channel == "inprocess").values(position=0)
        )

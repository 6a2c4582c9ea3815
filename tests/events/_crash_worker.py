"""A worker for `test_crash.py` to kill with SIGKILL mid-dispatch.

    python _crash_worker.py DATABASE_URL OUTPUT_PATH SECONDS_MAX

Its in-process subscriber appends `<event id hex> <aggregate id hex> <seq>` to OUTPUT_PATH
for each event it is handed, flushed and fsynced, and is slow (2 ms per event), so a kill
lands in the middle of a batch. Stops by itself after SECONDS_MAX.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from billfold.events.types import Event
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.worker import Worker

BATCH_SIZE = 50
SUBSCRIBER_DELAY_S = 0.002


async def main(database_url: str, output_path: str, seconds_max: float) -> None:
    settings = Settings(database_url=database_url, events_batch_size_max=BATCH_SIZE)
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    ledger = Ledger.from_settings(settings)
    await ledger.open()
    worker = Worker(settings, unit_of_work=UnitOfWork(engine), ledger=ledger)
    await worker.prepare()
    with open(output_path, "a", encoding="ascii") as output:  # noqa: ASYNC230 (fsync per line)

        async def record(event: Event) -> None:
            output.write(f"{event.id.hex} {event.aggregate_id.hex} {event.seq}\n")
            output.flush()
            os.fsync(output.fileno())
            await asyncio.sleep(SUBSCRIBER_DELAY_S)

        worker.bus.subscribe(record)
        deadline = time.monotonic() + seconds_max
        while time.monotonic() < deadline:
            if not await worker.run_once():
                await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

"""Events benchmark: does the dispatcher keep up with the ledger at its peak?

The ledger produces transfers at its peak for `--seconds` (submitters through the batching
writer, in this process) while a `billfold worker` process (its own process, as deployed)
sequences them into the outbox and delivers every event to NATS JetStream (the local
server) and to a webhook endpoint served by a local receiver process (uvicorn, 204 for
every POST). After production stops the run waits for both channels to drain, then reads:

- produced/s: transfers over the span of their ledger timestamps;
- delivered/s per channel over the span of its own deliveries (webhooks: when the 2xx came
  back, the delivery's `completed_at`; NATS: when the server stored the message), so a
  channel that keeps up with a constant lag shows the producer's rate;
- lag: delivery time minus the transfer's ledger timestamp (taken as the ledger writes its
  batch, before the commit), p50 and p99;
- ratio: the slowest channel's delivered/s over produced/s (target >= 1.0, p99 lag < 1 s);
- the worker processes' CPU per event (user + system, from /proc, from the start of
  production until both channels drained): the cost of dispatching, steadier than the
  rates, which move with how much of the CPU the producer got.

`--rate N` offers N transfers/s instead of the peak (open loop: submitters on a schedule),
to see the lag the pipeline keeps below saturation; the target is for the peak. Each
submitter has one request in flight, so an offer past what they reach yields less
(produced/s says what was).

Run:  uv run python bench/events.py --seconds 5
Needs PostgreSQL (BILLFOLD_BENCH_DATABASE_URL) and NATS (BILLFOLD_BENCH_NATS_URL, default
nats://127.0.0.1:4222).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import nats
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import text

from _common import (
    bench_database_url,
    console,
    percentile,
    print_table,
    process_stat,
    stat_cpu_s,
    temporary_database,
)
from billfold.events import service
from billfold.events.types import EVENT_PARTITIONS
from billfold.identity import service as identity_service
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE, Mode
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import NewAccount, NewTransfer
from billfold.migrations import upgrade

DEFAULT_SECONDS = 5
ACCOUNTS = 1000
SUBMITTERS = 8
REQUEST_SIZE = 200
DRAIN_S_MIN = 30.0
DRAIN_STALL_S = 10.0
"""Past `DRAIN_S_MIN`, the wait ends once neither channel delivered anything for this long."""
DRAIN_S_MAX = 600.0
DRAIN_POLL_S = 1.0
"""How often the drain is checked. Its count of succeeded deliveries took 18 to 20 ms of the
server's CPU each time, beside the workers it waits for; the rates come from the
deliveries' own timestamps, not from when the check saw them."""
WORKERS = int(os.environ.get("BILLFOLD_BENCH_EVENTS_WORKERS", "2"))
"""`billfold worker` processes: on PostgreSQL they share the work through row locks (the
sequencer's cursor, each channel's partitions, the deliveries)."""
IDLE_CPU_SHARE = 0.2
IDLE_WINDOW_S = 0.5
IDLE_WAIT_S_MAX = 60.0
WEBHOOK_BATCH = 200
"""The receiver's endpoint takes CloudEvents batches of up to this many events per request
(`batch_size_max`); one request per event tops out near 1,000/s in one Python worker."""
NATS_URL = os.environ.get("BILLFOLD_BENCH_NATS_URL", "nats://127.0.0.1:4222")
NS = 1_000_000_000
TRANSFER_TYPES = "com.billfold.transfer."


def worker_settings(database_url: str, stream: str, prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        nats_url=NATS_URL,  # type: ignore[arg-type]
        nats_stream=stream,
        nats_subject_prefix=prefix,
        webhooks_allow_private=True,
        events_batch_size_max=4000,
        events_partitions_per_claim=EVENT_PARTITIONS // WORKERS,
        events_poll_interval_s=0.02,
        webhooks_concurrency=64,
        webhooks_batch_size_max=1000,
    )


# -- the processes


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The webhook receiver: reads the body, answers 204."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def run_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_worker(database_url: str, stream: str, prefix: str) -> None:
    from billfold.worker import main

    main(worker_settings(database_url, stream, prefix), drain=False)


def spawn(*arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *arguments])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the run


@dataclass
class Figures:
    produced: int
    produced_per_s: float
    channels: dict[str, tuple[int, float, float, float]]
    """name -> (delivered, per second, p50 lag ms, p99 lag ms)"""
    worker_cpu_s: float
    """CPU the worker processes spent from the start of production until both channels
    had delivered every event: what dispatching costs, whoever won the race for the CPU."""


async def produce(
    ledger: Ledger, tenant: uuid.UUID, accounts: list[uuid.UUID], seconds: float, rate: float
) -> int:
    """Transfers for `seconds`: each submitter sends its next request of `REQUEST_SIZE` as
    soon as the last returned (`rate` 0, the ledger's peak), or on a schedule that offers
    `rate` transfers/s in all (a submitter that falls behind sends at once)."""
    start = time.monotonic()
    deadline = start + seconds
    interval_s = SUBMITTERS * REQUEST_SIZE / rate if rate else 0.0
    produced = 0
    rng = random.Random(1)

    async def submitter(index: int) -> None:
        nonlocal produced
        next_at = start + index * interval_s / SUBMITTERS  # spread the starts
        while time.monotonic() < deadline:
            if interval_s:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval_s, time.monotonic())
                if time.monotonic() >= deadline:
                    break
            batch = []
            for _ in range(REQUEST_SIZE):
                debit, credit = rng.sample(accounts, 2)
                batch.append(
                    NewTransfer(
                        id=uuid.uuid4(),
                        tenant_id=tenant,
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=1,
                        ledger="USD",
                        code=1,
                    )
                )
            results = await ledger.submit(batch)
            produced += sum(1 for r in results if r.status.value == "ok")

    await asyncio.gather(*(submitter(index) for index in range(SUBMITTERS)))
    return produced


async def setup(database_url: str, receiver_url: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        async with UnitOfWork(engine).begin() as session:
            bootstrapped = await identity_service.bootstrap_tenant(
                session, name="Bench", now_ns=time.time_ns()
            )
            tenant = bootstrapped.tenant.id
            await service.create_endpoint(
                session,
                scope=service.Scope(tenant_id=tenant, mode=Mode.TEST),
                url=receiver_url,
                description="bench",
                event_types=["com.billfold.transfer.posted.v1"],
                batch_size_max=WEBHOOK_BATCH,
                allow_private=True,
                endpoints_max=20,
                now_ns=time.time_ns(),
            )
    finally:
        await engine.dispose()
    return uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant}:test"), []


async def nats_lags(stream: str, expected: int) -> list[tuple[int, int]]:
    """(stored at, ledger timestamp) in ns for every message of the stream."""
    client = await nats.connect(NATS_URL)
    found: list[tuple[int, int]] = []
    try:
        js = client.jetstream()
        subscription = await js.pull_subscribe(
            "",
            durable=None,
            stream=stream,
            # Unacknowledged, an explicit-ack consumer stops at 1,000 messages in flight.
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, max_ack_pending=-1),
        )
        while len(found) < expected:
            try:
                messages = await subscription.fetch(1000, timeout=2)
            except TimeoutError:
                break
            for message in messages:
                stored = message.metadata.timestamp
                envelope = json.loads(message.data)
                if not envelope["type"].startswith(TRANSFER_TYPES):
                    continue  # the tenant's bootstrap (its API keys) made events too
                found.append((int(stored.timestamp() * NS), int(envelope["data"]["timestamp"])))
    finally:
        await client.close()
    return found


def lag_figures(pairs: Sequence[tuple[int, int]]) -> tuple[int, float, float, float]:
    if not pairs:
        return 0, 0.0, 0.0, 0.0
    delivered = sorted(at for at, _ in pairs)
    lags = sorted((at - produced) / 1e6 for at, produced in pairs)
    span_s = max((delivered[-1] - delivered[0]) / NS, 1e-9)
    return len(pairs), len(pairs) / span_s, percentile(lags, 0.5), percentile(lags, 0.99)


async def wait_for_workers(database_url: str, timeout_s: float = 60.0) -> None:
    """Until the workers are up (they create their cursors before their loops start): a
    slow start under load would otherwise count as lag."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                ready = await connection.scalar(
                    text("SELECT count(*) FROM events_cursors WHERE channel = 'nats'")
                )
            if int(ready or 0) >= EVENT_PARTITIONS:
                break
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    await asyncio.sleep(1)  # the receiver


async def wait_until_idle(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    """Until every worker process idles (less than `IDLE_CPU_SHARE` of a core over
    `IDLE_WINDOW_S`), at most `IDLE_WAIT_S_MAX`: the first to start makes the cursors the
    wait above looks for, while the others may still be importing (seconds of CPU under
    two cores), which production would otherwise compete with and the workers' CPU per
    event would count as dispatching."""
    deadline = time.monotonic() + IDLE_WAIT_S_MAX
    while time.monotonic() < deadline:
        before = workers_cpu_s(workers, each=True)
        await asyncio.sleep(IDLE_WINDOW_S)
        after = workers_cpu_s(workers, each=True)
        if any(math.isnan(spent) for spent in after):
            return  # no /proc: nothing to watch
        if all(b - a < IDLE_CPU_SHARE * IDLE_WINDOW_S for a, b in zip(before, after, strict=True)):
            return


async def wait_for_drain(database_url: str, stream: str, produced: int, timeout_s: float) -> None:
    """Until both channels delivered every event: at least `timeout_s`, longer while they
    still make progress (a run whose producer got more of the CPU leaves a longer backlog;
    cut off, it would report no ratio at all), at most `DRAIN_S_MAX`."""
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    client = await nats.connect(NATS_URL)
    started = time.monotonic()
    deadline = started + timeout_s
    progress = (-1, -1)
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                done = await connection.scalar(
                    text(
                        "SELECT count(*) FROM events_webhook_deliveries WHERE status = 'succeeded'"
                    )
                )
            try:
                stored = (await client.jetstream().stream_info(stream)).state.messages
            except nats.js.errors.NotFoundError:
                stored = 0  # the worker creates it with its first publish
            if int(done or 0) >= produced and stored >= produced:
                return
            if (int(done or 0), stored) != progress:
                progress = (int(done or 0), stored)
                extended = max(deadline, time.monotonic() + DRAIN_STALL_S)
                deadline = min(extended, started + DRAIN_S_MAX)
            await asyncio.sleep(DRAIN_POLL_S)
    finally:
        await client.close()
        await engine.dispose()


async def webhook_lags(database_url: str) -> list[tuple[int, int]]:
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT d.completed_at, e.occurred_at FROM events_webhook_deliveries d"
                    " JOIN events_outbox e ON e.id = d.event_id WHERE d.status = 'succeeded'"
                )
            )
            return [(int(a), int(b)) for a, b in rows]
    finally:
        await engine.dispose()


async def run(seconds: int, rate: float) -> Figures:
    suffix = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{suffix}", f"bench.{suffix}"
    port = free_port()
    receiver = spawn("--receiver", str(port))
    async with temporary_database(bench_database_url(), "billfold_bench_events") as database_url:
        workers: list[subprocess.Popen[bytes]] = []
        try:
            tenant, _ = await setup(database_url, f"http://127.0.0.1:{port}/hooks")
            ledger = Ledger.from_settings(Settings(database_url=database_url))
            await ledger.open()
            accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
            await ledger.create_accounts(
                [NewAccount(id=a, tenant_id=tenant, ledger="USD", code=1) for a in accounts]
            )
            workers = [spawn("--worker", database_url, stream, prefix) for _ in range(WORKERS)]
            await wait_for_workers(database_url)
            await wait_until_idle(workers)
            cpu_before = workers_cpu_s(workers)
            produced = await produce(ledger, tenant, accounts, seconds, rate)
            async with ledger.repository.read() as reader:
                first = await reader.transfers_after(after_timestamp=0, limit=1)
                last_timestamp = await reader.last_timestamp()
            await ledger.close()
            span_s = (last_timestamp - first[0].timestamp) / NS if first else 1.0
            await wait_for_drain(database_url, stream, produced, max(DRAIN_S_MIN, 3 * seconds))
            worker_cpu_s = workers_cpu_s(workers) - cpu_before
            webhooks = lag_figures(await webhook_lags(database_url))
            nats_figures = lag_figures(await nats_lags(stream, produced))
        finally:
            for process in (*workers, receiver):
                process.send_signal(signal.SIGTERM)
            for process in (*workers, receiver):
                if process is not None:
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
            await delete_stream(stream)
    return Figures(
        produced=produced,
        produced_per_s=produced / max(span_s, 1e-9),
        channels={"nats": nats_figures, "webhook": webhooks},
        worker_cpu_s=worker_cpu_s,
    )


@overload
def workers_cpu_s(workers: Sequence[subprocess.Popen[bytes]]) -> float: ...
@overload
def workers_cpu_s(
    workers: Sequence[subprocess.Popen[bytes]], *, each: Literal[True]
) -> list[float]: ...
def workers_cpu_s(
    workers: Sequence[subprocess.Popen[bytes]], *, each: bool = False
) -> float | list[float]:
    """CPU seconds the worker processes have spent so far, in all or `each` (NaN where
    /proc is missing)."""
    fields = [process_stat(worker.pid) for worker in workers]
    spent = [math.nan if f is None else stat_cpu_s(f) for f in fields]
    return spent if each else sum(spent)


async def delete_stream(stream: str) -> None:
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(stream)
    except Exception:  # noqa: S110 (nothing to clean up)
        pass
    finally:
        await client.close()


def summary(figures: Figures, rate: float) -> dict[str, object]:
    nats_count, nats_rate, _, nats_p99 = figures.channels["nats"]
    hook_count, hook_rate, _, hook_p99 = figures.channels["webhook"]
    complete = nats_count >= figures.produced and hook_count >= figures.produced
    slowest = min(nats_rate, hook_rate) if complete else 0.0
    return {
        "bench": "events",
        "rate": rate,
        "produced": figures.produced,
        "produced_per_s": round(figures.produced_per_s),
        "nats_delivered": nats_count,
        "webhook_delivered": hook_count,
        "nats_per_s": round(nats_rate),
        "webhook_per_s": round(hook_rate),
        "p99_lag_ms": round(max(nats_p99, hook_p99), 1),
        "ratio": round(slowest / figures.produced_per_s, 3) if figures.produced_per_s else 0.0,
        "worker_cpu_us_per_event": round(figures.worker_cpu_s * 1e6 / figures.produced, 1)
        if figures.produced
        else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--receiver"]:
        run_receiver(int(arguments[1]))
        return 0
    if arguments[:1] == ["--worker"]:
        run_worker(arguments[1], arguments[2], arguments[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="of production")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered transfers/s (default 0: the ledger's peak, the target's condition);"
        " below the peak, the lag the pipeline keeps when the machine is not full",
    )
    parsed = parser.parse_args(arguments)
    if not 1 <= parsed.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")
    if not 0 <= parsed.rate <= 1_000_000:
        parser.error("--rate must be between 0 and 1000000")
    figures = asyncio.run(run(parsed.seconds, parsed.rate))
    rows = [["produced", str(figures.produced), f"{figures.produced_per_s:,.0f}", "", ""]]
    for name, (count, rate, p50, p99) in figures.channels.items():
        rows.append([name, str(count), f"{rate:,.0f}", f"{p50:,.1f}", f"{p99:,.1f}"])
    print_table("events", ["channel", "events", "per s", "p50 lag ms", "p99 lag ms"], rows)
    result = summary(figures, parsed.rate)
    console.print(
        f"workers' CPU: {figures.worker_cpu_s:,.1f} s, "
        f"{result['worker_cpu_us_per_event']} µs per event (both channels)"
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

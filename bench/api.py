"""POST /v1/transfers over real HTTP, against `pgbench` TPC-B on the same PostgreSQL server.

Creates a throwaway database on `BILLFOLD_BENCH_DATABASE_URL` (default: the local server over
its Unix socket), migrates it, creates a tenant and one `ledger:write` API key per load
process, opens 10,000 accounts (in-process, through the ledger), then starts the API as an
API node of a production deployment runs it: `billfold serve --workers N` (uvicorn, uvloop,
httptools, JSON logs at `--log-level`) with `BILLFOLD_EMBEDDED_WORKER=false`, the README's
production setting, where event dispatch runs in `billfold worker` processes of its own
(`bench/events.py` measures those). `--embedded-worker` measures the single-process default
instead, each server process also running a worker's loops (sequencing every transfer into
the outbox among them): about a tenth fewer transfers/s on two cores, and more than twice
the database transactions per transfer. It starts the server in a subprocess, waits until
every one of its processes serves (not only the first, which is when `/readyz` answers), and
measures two phases of `--seconds` each:

- uniform: `--clients` concurrent HTTP/1.1 keep-alive connections, spread over
  `--load-processes` processes, each posting one transfer at a time between random accounts;
- hot:     the same, but every transfer credits one account.

The connections speak HTTP/1.1 through a minimal client of a few lines (`--client raw`, the
default), because httpx spends ~1.5 ms of CPU per request (measured here), more than the
server under test, which on a small machine would measure the load generator instead;
`--client httpx` runs the same load through httpx (one client per connection: a shared pool
costs more per request the more connections it holds).

A load process opens its connections one at a time before it starts: opened all at once,
they queue on the server's shared listening socket, where one process can accept most of
them (keep-alive keeps them there), and the run would measure that one process.

Every request carries `Authorization: Bearer <key>` and a fresh `Idempotency-Key`, so it
pays for everything a real one does: authentication, the rate limit, the idempotency record
(claimed before, completed after), validation, the batching writer, the response. Each phase
reports transfers/s (201s from its start until the last request in flight returns) and
p50/p99 latency, and the CPU the server's processes spent in the measured window per
transfer (from /proc; each process's share shows whether the load was balanced). Then
`ledger verify` must pass.

The reference is `pgbench -i -s 10` then `-c 8 -j 2` for the same number of seconds, run
first in its own throwaway database. Target: tps >= 1.0x pgbench (printed, never enforced).
The client, the server and PostgreSQL share the machine: on 2 cores, the load generator's
CPU is CPU the server does not get.

A last phase (`--no-floor` leaves it out) runs the uniform load against FastAPI alone
(`bench/_floor_app.py`: the same route, body and headers under the same uvicorn settings,
answered without middleware, authentication, idempotency, database or log line). Its
requests/s is the floor's figure: the most this server stack reaches on the machine with
the same client, whatever Billfold does per request.

Run:  uv run python bench/api.py --seconds 10
The last line of the output is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

from _common import (
    PgbenchResult,
    bench_database_url,
    checkpoint,
    console,
    percentile,
    print_table,
    process_stat,
    run_pgbench,
    stat_cpu_s,
    temporary_database,
)
from billfold.identity import service as identity_service
from billfold.identity.types import Mode, Scope
from billfold.kit.auth import Principal
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import format_id, new_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import BATCH_SIZE_MAX, CreateAccountStatus, NewAccount
from billfold.migrations import upgrade

ACCOUNT_COUNT = 10_000
LEDGER = "USD"
CODE = 1
DEFAULT_SECONDS = 10
DEFAULT_CLIENTS = 256
DEFAULT_LOAD_PROCESSES = 1
DEFAULT_WORKERS = 2
WARMUP_S = 2.0
STATISTICS_DELAY_S = 1.5
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0
VERIFY_GRACE_S = 60
RATIO_TARGET = 1.0
FLOOR_PHASE = "floor (FastAPI alone)"
FAILURES_SHOWN_MAX = 20
# Far above what the run can reach, so the limiter counts every request but refuses none.
RATE_LIMIT_PER_KEY = 10_000
RATE_LIMIT_WINDOW_S = 1


# ----------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What one load process does: its connections, key and accounts, until `deadline`
    (wall clock, `time.time()`, shared across processes)."""

    base_url: str
    api_key: str
    account_ids: Sequence[str]
    hot: bool
    clients: int
    start_at: float
    deadline: float
    seed: int
    client: str
    """`raw` (a minimal HTTP/1.1 client) or `httpx`."""
    interval_s: float = 0.0
    """Each connection starts a request at most this often (0: as soon as the last returns)."""


@dataclass(slots=True)
class LoadTally:
    ok: int = 0
    latencies_s: list[float] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    last_return: float = 0.0


def _transfer_body(plan: LoadPlan, rng: random.Random) -> bytes:
    count = len(plan.account_ids)
    if plan.hot:
        debit, credit = 1 + rng.randrange(count - 1), 0
    else:
        debit = rng.randrange(count)
        credit = rng.randrange(count - 1)
        credit += credit >= debit
    body = {
        "id": format_id("txf", new_id()),
        "debit_account_id": plan.account_ids[debit],
        "credit_account_id": plan.account_ids[credit],
        "amount": "1",
        "ledger": LEDGER,
        "code": CODE,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class RawConnection:
    """HTTP/1.1 keep-alive over one socket, just enough for this benchmark: ~30 µs of CPU a
    request where httpx spends ~1.5 ms, which on a small machine is CPU the server under
    test would not get. Responses must carry Content-Length (uvicorn's do)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        host, _, port = base_url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        lines = [f"POST {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        status = int((await self._reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class HttpxConnection:
    """One httpx client per connection: a shared pool costs more per request the more
    connections it holds (measured: 1.6 ms at 1, 4.3 ms at 128)."""

    def __init__(self, base_url: str) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
        self._client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = await self._client.post(path, content=body, headers=headers)
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


async def _connect(plan: LoadPlan) -> RawConnection | HttpxConnection:
    if plan.client == "raw":
        return await RawConnection.open(plan.base_url)
    return HttpxConnection(plan.base_url)


async def _client(
    plan: LoadPlan,
    connection: RawConnection | HttpxConnection,
    rng: random.Random,
    tally: LoadTally,
) -> None:
    headers = {"Authorization": f"Bearer {plan.api_key}", "Content-Type": "application/json"}
    # Requests started before the measurement starts are the warm-up: answered, not counted.
    measure_from = time.perf_counter() + (plan.start_at - time.time())
    try:
        next_at = time.perf_counter() + rng.random() * plan.interval_s  # spread the starts
        while time.time() < plan.deadline:
            if plan.interval_s:
                await asyncio.sleep(next_at - time.perf_counter())
                next_at = max(next_at + plan.interval_s, time.perf_counter())
            body = _transfer_body(plan, rng)
            started = time.perf_counter()
            try:
                status, content = await connection.post(
                    "/v1/transfers", body, {**headers, "Idempotency-Key": uuid.uuid4().hex}
                )
            except (OSError, asyncio.IncompleteReadError, httpx.HTTPError) as error:
                tally.failures[f"error: {type(error).__name__}"] += 1
                return
            if status != 201:
                tally.failures[f"{status} {content[:120].decode(errors='replace')}"] += 1
            elif started >= measure_from:
                tally.ok += 1
                tally.latencies_s.append(time.perf_counter() - started)
    finally:
        tally.last_return = max(tally.last_return, time.time())
        await connection.close()


async def _load(plan: LoadPlan) -> LoadTally:
    tally = LoadTally()
    # One at a time, so the server's processes take turns accepting them: opened all at
    # once, they queue on the shared listening socket, where one process can take most.
    connections = [await _connect(plan) for _ in range(plan.clients)]
    await asyncio.gather(
        *(
            _client(plan, connection, random.Random(plan.seed * 100_003 + index), tally)
            for index, connection in enumerate(connections)
        )
    )
    return tally


def load_process(plan: LoadPlan, results: Any) -> None:
    """One load process: its connections until the deadline, then its tally on `results`."""
    tally = uvloop.run(_load(plan))
    results.put((tally.ok, tally.latencies_s, dict(tally.failures), tally.last_return))


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    clients: int
    transfers_ok: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    failures: dict[str, int]
    server_cpu_s: list[float]
    """CPU seconds each server process spent during the measured window, busiest first."""
    database_transactions: int
    """Transactions the database ended during the measured window (the server's: its own
    and its pings; the run's other connections are idle then)."""

    @property
    def tps(self) -> float:
        return self.transfers_ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def transactions_per_transfer(self) -> float:
        if not self.transfers_ok:
            return math.nan
        return self.database_transactions / self.transfers_ok

    @property
    def server_cpu_ms_per_transfer(self) -> float:
        if not self.transfers_ok:
            return math.nan
        return sum(self.server_cpu_s) * 1000 / self.transfers_ok


def session_cpu_s(session_id: int) -> dict[int, float]:
    """CPU seconds (user + system) of each live process in a session, from /proc (Linux;
    empty elsewhere)."""
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        fields = process_stat(entry.parent.name)
        # state, ppid, pgrp, session, ...
        if fields is not None and int(fields[3]) == session_id:
            times[int(entry.parent.name)] = stat_cpu_s(fields)
    return times


async def database_transactions(database_url: str) -> int:
    """Transactions the database has ended (committed or rolled back), per its statistics."""
    connection = await asyncpg.connect(database_url)
    try:
        ended = await connection.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return int(ended)


class CpuWindow:
    """Between `start_at` and `deadline` (wall clock): the server's CPU per process, and the
    transactions its database ended. The second is a count: unlike CPU time, it does not
    grow when other work on the machine crowds the server out. It is approximate: a busy
    backend reports its statistics at most once a second."""

    def __init__(
        self, session_id: int, database_url: str, *, start_at: float, deadline: float
    ) -> None:
        self._session_id, self._database_url = session_id, database_url
        self._start_at, self._deadline = start_at, deadline
        self.per_process_s: list[float] = []
        self.transactions = 0
        self._thread = threading.Thread(target=self._measure, daemon=True)
        self._thread.start()

    def _measure(self) -> None:
        time.sleep(max(0.0, self._start_at - time.time()))
        before = session_cpu_s(self._session_id)
        transactions_before = asyncio.run(database_transactions(self._database_url))
        time.sleep(max(0.0, self._deadline - time.time()))
        after = session_cpu_s(self._session_id)
        # A busy backend reports to pg_stat_database at most once a second.
        time.sleep(STATISTICS_DELAY_S)
        self.transactions = asyncio.run(database_transactions(self._database_url))
        self.transactions -= transactions_before
        spent = [after[pid] - before.get(pid, 0.0) for pid in after]
        self.per_process_s = sorted((s for s in spent if s > 0), reverse=True)

    def result(self) -> tuple[list[float], int]:
        self._thread.join()
        return self.per_process_s, self.transactions


def run_phase(
    name: str, *, plans: list[LoadPlan], measure_s: float, server_session: int, database_url: str
) -> PhaseResult:
    """Start one process per plan, wait for their tallies, combine them."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=load_process, args=(plan, results)) for plan in plans]
    window = CpuWindow(
        server_session, database_url, start_at=plans[0].start_at, deadline=plans[0].deadline
    )
    for process in processes:
        process.start()
    tallies = [results.get(timeout=measure_s + WARMUP_S + READY_TIMEOUT_S) for _ in processes]
    for process in processes:
        process.join(SHUTDOWN_TIMEOUT_S)
    server_cpu_s, transactions = window.result()
    ok = sum(tally[0] for tally in tallies)
    latencies = sorted(latency for tally in tallies for latency in tally[1])
    failures: collections.Counter[str] = collections.Counter()
    for tally in tallies:
        failures.update(tally[2])
    measure_start = plans[0].start_at
    elapsed_s = max(tally[3] for tally in tallies) - measure_start
    return PhaseResult(
        name=name,
        clients=sum(plan.clients for plan in plans),
        transfers_ok=ok,
        elapsed_s=elapsed_s,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        failures=dict(failures),
        server_cpu_s=server_cpu_s,
        database_transactions=transactions,
    )


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True, slots=True)
class Fixture:
    """What the phases need: one API key per load process and the accounts' public ids."""

    api_keys: list[str]
    account_ids: list[str]
    ledger_tenant_id: uuid.UUID


async def create_tenant_and_keys(database_url: str, *, keys: int) -> tuple[Principal, list[str]]:
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            now_ns = time.time_ns()
            tenant = await identity_service.create_tenant(session, name="bench", now_ns=now_ns)
            created = [
                await identity_service.create_api_key(
                    session,
                    tenant_id=tenant.id,
                    name=f"bench {index}",
                    mode=Mode.TEST,
                    scopes=[Scope.LEDGER_WRITE],
                    expires_at_ns=None,
                    now_ns=now_ns,
                )
                for index in range(keys)
            ]
    finally:
        await engine.dispose()
    principal = Principal(
        tenant_id=tenant.id,
        api_key_id=created[0].api_key.id,
        mode=Mode.TEST,
        scopes=frozenset({Scope.LEDGER_WRITE.value}),
    )
    return principal, [key.secret for key in created]


async def open_accounts(database_url: str, tenant_id: uuid.UUID) -> list[str]:
    """Open the accounts without limit flags, so every transfer between them succeeds."""
    ledger = Ledger.from_settings(Settings(database_url=database_url))
    await ledger.open()
    try:
        ids = [new_id() for _ in range(ACCOUNT_COUNT)]
        for start in range(0, ACCOUNT_COUNT, BATCH_SIZE_MAX):
            chunk = ids[start : start + BATCH_SIZE_MAX]
            results = await ledger.create_accounts(
                [NewAccount(id=i, tenant_id=tenant_id, ledger=LEDGER, code=CODE) for i in chunk]
            )
            if any(result.status is not CreateAccountStatus.OK for result in results):
                raise RuntimeError("opening the benchmark's accounts failed")
    finally:
        await ledger.close()
    return [format_id("acc", i) for i in ids]


async def prepare(database_url: str, *, keys: int) -> Fixture:
    await asyncio.to_thread(upgrade, database_url)
    principal, api_keys = await create_tenant_and_keys(database_url, keys=keys)
    account_ids = await open_accounts(database_url, principal.ledger_tenant_id)
    return Fixture(api_keys, account_ids, principal.ledger_tenant_id)


async def verify(database_url: str) -> Any:
    ledger = Ledger.from_settings(Settings(database_url=database_url))
    await ledger.repository.open()
    try:
        return await ledger.verify(grace_s=VERIFY_GRACE_S)
    finally:
        await ledger.repository.close()


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    database_url: str, *, port: int, arguments: argparse.Namespace, log: Any
) -> subprocess.Popen[bytes]:
    """`billfold serve`, in its own process group so it can be stopped with its workers."""
    environment = {
        # Bytecode is cached: compiling the application afresh in every process, under
        # load, can hold the GIL long enough for uvicorn to take a starting process for
        # hung (no answer to its 5 s health check) and replace it.
        **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
        "BILLFOLD_DATABASE_URL": database_url,
        "BILLFOLD_HOST": "127.0.0.1",
        "BILLFOLD_PORT": str(port),
        "BILLFOLD_WORKERS": str(arguments.workers),
        "BILLFOLD_EMBEDDED_WORKER": "true" if arguments.embedded_worker else "false",
        "BILLFOLD_LOG_LEVEL": arguments.log_level,
        "BILLFOLD_LEDGER_BATCH_WINDOW_MS": str(arguments.window_ms),
        "BILLFOLD_RATE_LIMIT_CREDENTIAL_REQUESTS": str(RATE_LIMIT_PER_KEY),
        "BILLFOLD_RATE_LIMIT_WINDOW_S": str(RATE_LIMIT_WINDOW_S),
        "BILLFOLD_DATABASE_POOL_SIZE": str(arguments.pool_size),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "billfold.cli", "serve"],
        env=environment,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def start_floor_server(*, port: int, workers: int, log: Any) -> subprocess.Popen[bytes]:
    """`_floor_app` (the request alone, no Billfold) under the same uvicorn settings."""
    environment = {
        name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
    }
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "_floor_app:app"),
            *("--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", str(workers)),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        ],
        env=environment,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


QUIET_LEVELS = frozenset({"warning", "error"})
"""Server log levels at which uvicorn does not log a process starting."""

STARTED_LINE = b"Application startup complete."
"""What uvicorn logs once a server process serves (one line per process)."""


def _processes_started(log: Any) -> int:
    log.flush()
    size = os.fstat(log.fileno()).st_size
    return os.pread(log.fileno(), size, 0).count(STARTED_LINE)


SETTLED_CPU_S = 0.02
"""CPU a whole server session may spend in half a second once every process idles."""


def _settled(session_id: int) -> bool:
    """Whether the server's processes have stopped starting up: they spend (almost) no CPU
    in half a second. uvicorn logs no line per process above the info level."""
    before = sum(session_cpu_s(session_id).values())
    time.sleep(0.5)
    return sum(session_cpu_s(session_id).values()) - before < SETTLED_CPU_S


def wait_ready(
    base_url: str, server: subprocess.Popen[bytes], *, workers: int, quiet: bool, log: Any
) -> None:
    """Until every server process serves: `/readyz` answers once the first one does, and
    connections opened before the others start would all be served by that one. Each
    process logs when it serves; a `quiet` server (above the info level) logs nothing, and
    is ready once its processes idle."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and (_settled(server.pid) if quiet else _processes_started(log) >= workers):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"the server did not become ready: {_processes_started(log)} of {workers} processes"
        f" started in {READY_TIMEOUT_S:g} s"
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Outcome:
    phases: dict[str, PhaseResult]
    verify: Any
    pgbench: PgbenchResult


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plans_for(
    fixture: Fixture, *, base_url: str, hot: bool, arguments: argparse.Namespace
) -> list[LoadPlan]:
    processes: int = arguments.load_processes
    start_at = time.time() + WARMUP_S + 1.0  # one second for the processes to start
    deadline = start_at + arguments.seconds
    share, extra = divmod(arguments.clients, processes)
    return [
        LoadPlan(
            base_url=base_url,
            api_key=fixture.api_keys[index],
            account_ids=fixture.account_ids,
            hot=hot,
            clients=share + (index < extra),
            start_at=start_at,
            deadline=deadline,
            seed=arguments.seed * 1000 + index + (500 if hot else 0),
            client=arguments.client,
            interval_s=arguments.clients / arguments.rate if arguments.rate else 0.0,
        )
        for index in range(processes)
    ]


def run_server_phases(
    database_url: str, fixture: Fixture, arguments: argparse.Namespace, log: Any
) -> dict[str, PhaseResult]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(database_url, port=port, arguments=arguments, log=log)
    try:
        wait_ready(
            base_url,
            server,
            workers=arguments.workers,
            quiet=arguments.log_level in QUIET_LEVELS,
            log=log,
        )
        phases: dict[str, PhaseResult] = {}
        for name, hot in (("uniform", False), ("hot", True)):
            asyncio.run(checkpoint(bench_database_url()))
            progress(f"phase {name}: {arguments.clients} connections for {arguments.seconds} s")
            plans = plans_for(fixture, base_url=base_url, hot=hot, arguments=arguments)
            phases[name] = run_phase(
                name,
                plans=plans,
                measure_s=arguments.seconds,
                server_session=server.pid,
                database_url=database_url,
            )
        return phases
    finally:
        stop_server(server)


def run_floor_phase(
    database_url: str, fixture: Fixture, arguments: argparse.Namespace
) -> PhaseResult:
    """The uniform phase's load against `_floor_app`: the framework alone."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = start_floor_server(port=port, workers=arguments.workers, log=log)
        try:
            wait_ready(base_url, server, workers=arguments.workers, quiet=False, log=log)
            progress(f"phase floor: {arguments.clients} connections for {arguments.seconds} s")
            plans = plans_for(fixture, base_url=base_url, hot=False, arguments=arguments)
            return run_phase(
                FLOOR_PHASE,
                plans=plans,
                measure_s=arguments.seconds,
                server_session=server.pid,
                database_url=database_url,
            )
        finally:
            stop_server(server)


async def _with_database(arguments: argparse.Namespace, log: Any) -> tuple[dict[str, Any], Any]:
    admin_url = bench_database_url()
    async with temporary_database(admin_url, "billfold_bench_api") as url:
        progress(f"migrating {url.split('?')[0]} and opening {ACCOUNT_COUNT:,} accounts")
        fixture = await prepare(url, keys=arguments.load_processes)
        phases = await asyncio.to_thread(run_server_phases, url, fixture, arguments, log)
        progress("verifying the ledger")
        report = await verify(url)
        if arguments.floor:
            phases[FLOOR_PHASE] = await asyncio.to_thread(run_floor_phase, url, fixture, arguments)
    return phases, report


def run(arguments: argparse.Namespace, log: Any) -> Outcome:
    admin_url = bench_database_url()
    asyncio.run(checkpoint(admin_url))
    progress(f"reference: pgbench TPC-B -s 10 -c 8 -j 2 -T {arguments.seconds}")
    pgbench = asyncio.run(run_pgbench(admin_url, seconds=arguments.seconds))
    phases, report = asyncio.run(_with_database(arguments, log))
    return Outcome(phases, report, pgbench)


# ----------------------------------------------------------------------------- output


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _number(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def summary(outcome: Outcome, arguments: argparse.Namespace) -> dict[str, object]:
    """The JSON figures, under the key names the issue gives."""
    uniform, hot = outcome.phases["uniform"], outcome.phases["hot"]
    return {
        "bench": "api",
        "tps": round(uniform.tps),
        "hot_tps": round(hot.tps),
        "p50_ms": _number(uniform.p50_ms, 2),
        "p99_ms": _number(uniform.p99_ms, 2),
        "pgbench_tps": round(outcome.pgbench.tps),
        "ratio": _number(_ratio(uniform.tps, outcome.pgbench.tps), 2),
        "hot_ratio": _number(_ratio(hot.tps, outcome.pgbench.tps), 2),
        "hot_p50_ms": _number(hot.p50_ms, 2),
        "hot_p99_ms": _number(hot.p99_ms, 2),
        "server_cpu_ms": _number(uniform.server_cpu_ms_per_transfer, 3),
        "hot_server_cpu_ms": _number(hot.server_cpu_ms_per_transfer, 3),
        "db_transactions_per_transfer": _number(uniform.transactions_per_transfer, 3),
        "hot_db_transactions_per_transfer": _number(hot.transactions_per_transfer, 3),
        **_floor_figures(outcome),
        "clients": arguments.clients,
        "rate": arguments.rate,
        "workers": arguments.workers,
        "load_processes": arguments.load_processes,
        "embedded_worker": arguments.embedded_worker,
    }


def _floor_figures(outcome: Outcome) -> dict[str, object]:
    floor = outcome.phases.get(FLOOR_PHASE)
    if floor is None:
        return {}
    return {
        "floor_rps": round(floor.tps),
        "floor_ratio": _number(_ratio(floor.tps, outcome.pgbench.tps), 2),
        "floor_server_cpu_ms": _number(floor.server_cpu_ms_per_transfer, 3),
    }


def print_phases(outcome: Outcome, arguments: argparse.Namespace) -> None:
    rows = [
        [
            phase.name,
            str(phase.clients),
            f"{phase.transfers_ok:,}",
            f"{phase.tps:,.0f}",
            f"{phase.p50_ms:.2f}",
            f"{phase.p99_ms:.2f}",
            f"{phase.server_cpu_ms_per_transfer:.3f}",
            " / ".join(f"{seconds:.1f}" for seconds in phase.server_cpu_s),
            f"{phase.transactions_per_transfer:.3f}",
        ]
        for phase in outcome.phases.values()
    ]
    pgbench = outcome.pgbench
    rows.append(["pgbench TPC-B", str(pgbench.clients), "", f"{pgbench.tps:,.0f}", *[""] * 5])
    print_table(
        f"POST /v1/transfers over HTTP: {ACCOUNT_COUNT:,} accounts, {arguments.seconds} s per"
        f" phase, {arguments.workers} server processes, {arguments.load_processes} load"
        f" processes, log level {arguments.log_level},"
        f" {'embedded worker' if arguments.embedded_worker else 'no embedded worker'}",
        [
            "phase",
            "conns",
            "transfers",
            "per s",
            "p50 ms",
            "p99 ms",
            "CPU ms/transfer",
            "CPU s/process",
            "DB tx/transfer",
        ],
        rows,
    )


def print_ratios(figures: dict[str, object]) -> None:
    def row(name: str, value: object) -> list[str]:
        met = isinstance(value, float) and value >= RATIO_TARGET
        return [name, f"{value}", f">= {RATIO_TARGET:g}", "[green]yes[/]" if met else "[red]no[/]"]

    print_table(
        "Targets",
        ["ratio", "measured", "target", "met"],
        [
            row("uniform / pgbench", figures["ratio"]),
            row("hot / pgbench", figures["hot_ratio"]),
            *(
                [["floor / pgbench", f"{figures['floor_ratio']}", "(reference)", ""]]
                if "floor_ratio" in figures
                else []
            ),
        ],
    )


def report_problems(outcome: Outcome) -> bool:
    """Print every failed request and any ledger problem; True when there was none."""
    healthy = True
    for phase in outcome.phases.values():
        for failure, count in list(phase.failures.items())[:FAILURES_SHOWN_MAX]:
            healthy = False
            console.print(f"[red]FAILED[/] phase {phase.name}: {count:,} x {failure}")
    report = outcome.verify
    if report.ok:
        console.print(
            f"ledger verify: [green]ok[/] ({report.accounts_checked:,} accounts,"
            f" {report.transfers_checked:,} transfers)"
        )
        return healthy
    console.print(f"[bold red]ledger verify FAILED[/]: {report.problems_found:,} problems")
    for problem in report.problems[:FAILURES_SHOWN_MAX]:
        console.print(f"  {problem.kind} {problem.subject}: {problem.detail}")
    return False


# ----------------------------------------------------------------------------- main


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="per phase")
    parser.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS, help="concurrent HTTP connections"
    )
    parser.add_argument(
        "--load-processes", type=int, default=DEFAULT_LOAD_PROCESSES, help="client processes"
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="server processes (uvicorn)"
    )
    parser.add_argument(
        "--pool-size", type=int, default=10, help="database connections per server pool"
    )
    parser.add_argument("--window-ms", type=float, default=2.0, help="batching writer window")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="the server's (info: one JSON access line per request, as in production)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: a minimal HTTP/1.1 client, or httpx (costs ~50x more CPU)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered transfers/s over all connections (default 0: as many as are answered);"
        " at one rate the server CPU per transfer of two versions compares fairly",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the uniform load against FastAPI alone (bench/_floor_app.py): what the"
        " server could reach on this machine if Billfold's own work cost nothing",
    )
    parser.add_argument(
        "--embedded-worker",
        action="store_true",
        help="run the worker's loops in every server process (the single-process default)"
        " instead of as a production API node (BILLFOLD_EMBEDDED_WORKER=false)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for account choice")
    parser.add_argument("--server-log", type=Path, help="keep the server's output here")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")
    if not 1 <= arguments.load_processes <= 16:
        parser.error("--load-processes must be between 1 and 16")
    if not arguments.load_processes <= arguments.clients <= 10_000:
        parser.error("--clients must be between --load-processes and 10000")
    if not 1 <= arguments.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    if not 0 <= arguments.rate <= 1_000_000:
        parser.error("--rate must be between 0 and 1000000")
    if not 1 <= arguments.pool_size <= 100:
        parser.error("--pool-size must be between 1 and 100")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    with tempfile.TemporaryFile() as scratch:
        log = arguments.server_log.open("w+b") if arguments.server_log else scratch
        try:
            outcome = run(arguments, log)
        finally:
            if arguments.server_log:
                log.close()
    figures = summary(outcome, arguments)
    print_phases(outcome, arguments)
    print_ratios(figures)
    healthy = report_problems(outcome)
    print(json.dumps(figures), flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

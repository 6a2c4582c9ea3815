"""Ledger write throughput on PostgreSQL, against `pgbench` TPC-B on the same server.

Creates a throwaway database on `BILLFOLD_BENCH_DATABASE_URL` (default: the local server over
its Unix socket), migrates it, opens 10,000 accounts without balance limits in one tenant and
ledger, then runs three phases of `--seconds` each:

- uniform: `--clients` concurrent tasks, each submitting one transfer at a time through the
  batching writer (`Ledger.submit`), between random pairs of accounts;
- hot:     the same, but every transfer credits one account;
- single:  `--single-clients` tasks calling `Ledger.create_transfers` with one transfer, so
  each transfer is its own database transaction.

Each phase reports transfers/s (ok transfers from the start of the phase until the last
request in flight at its deadline returns), p50/p99 latency (submit to result) and the average
batch. The producers form a closed loop, so latency is about clients / throughput (Little's
law): `--clients` trades latency for batch size; throughput is flat beyond ~1,000. The event
loop is uvloop, as under `billfold serve` (uvicorn), unless `--loop asyncio`.

Then `ledger verify` must pass. The reference is `pgbench -i -s 10` then `-c 8 -j 2` for the
same number of seconds, in its own throwaway database. Targets: uniform >= 10x pgbench,
hot >= 0.8x uniform; they are printed, never enforced. The exit status is non-zero only when
the ledger misbehaves (a non-ok result, an error, or a failed verification).

Run:  uv run python bench/ledger.py --seconds 10
The last line of the output is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvloop

from _common import (
    PgbenchResult,
    bench_database_url,
    checkpoint,
    console,
    percentile,
    print_table,
    run_pgbench,
    temporary_database,
)
from billfold.kit.ids import new_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    BATCH_SIZE_MAX,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    TransferResult,
)
from billfold.ledger.verify import VerifyReport
from billfold.ledger.writer import BatchingWriter
from billfold.migrations import upgrade

ACCOUNT_COUNT = 10_000
LEDGER = "USD"
CODE = 1
DEFAULT_SECONDS = 10
DEFAULT_CLIENTS = 8000
DEFAULT_SINGLE_CLIENTS = 8
DEFAULT_WINDOW_MS = 2.0
VERIFY_GRACE_S = 60
UNIFORM_RATIO_TARGET = 10.0
HOT_VS_UNIFORM_TARGET = 0.8
PROBLEMS_SHOWN_MAX = 20

Submit = Callable[[Sequence[NewTransfer]], Awaitable[list[TransferResult]]]
MakeTransfer = Callable[[], NewTransfer]


# ----------------------------------------------------------------------------- phases


@dataclass(slots=True)
class Tally:
    """What the producers of one phase observed."""

    ok: int = 0
    latencies_s: list[float] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    clients: int
    transfers_ok: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    batches: int
    batched_transfers: int
    failures: dict[str, int]

    @property
    def tps(self) -> float:
        return self.transfers_ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def average_batch(self) -> float:
        return self.batched_transfers / self.batches if self.batches else math.nan


async def produce(submit: Submit, make: MakeTransfer, deadline: float, tally: Tally) -> None:
    """Submit one transfer at a time until the deadline; an exception ends this producer."""
    while time.perf_counter() < deadline:
        transfer = make()
        started = time.perf_counter()
        try:
            results = await submit([transfer])
        except Exception as error:  # recorded and reported: any error is a ledger bug
            tally.failures[f"error: {type(error).__name__}: {error}"] += 1
            return
        tally.latencies_s.append(time.perf_counter() - started)
        status = results[0].status
        if status is CreateTransferStatus.OK:
            tally.ok += 1
        else:
            tally.failures[str(status)] += 1


@dataclass(frozen=True, slots=True)
class PhasePlan:
    name: str
    make: MakeTransfer
    submit: Submit
    clients: int
    writer: BatchingWriter | None
    """The batching writer the phase goes through, for its batch counters (None: direct)."""


async def run_phase(plan: PhasePlan, *, seconds: float) -> PhaseResult:
    """`plan.clients` producers for `seconds`; throughput counts until the last one returns."""
    writer = plan.writer
    batches_before = writer.batches_written if writer else 0
    transfers_before = writer.transfers_written if writer else 0
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(produce(plan.submit, plan.make, deadline, tally) for _ in range(plan.clients))
    )
    elapsed_s = time.perf_counter() - started
    latencies = sorted(tally.latencies_s)
    batches = writer.batches_written - batches_before if writer else tally.ok
    batched = writer.transfers_written - transfers_before if writer else tally.ok
    return PhaseResult(
        name=plan.name,
        clients=plan.clients,
        transfers_ok=tally.ok,
        elapsed_s=elapsed_s,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        batches=batches,
        batched_transfers=batched,
        failures=dict(tally.failures),
    )


@dataclass(frozen=True, slots=True)
class Workload:
    """Makes transfers of 1 between the benchmark's accounts; its methods are `MakeTransfer`s."""

    tenant_id: uuid.UUID
    accounts: Sequence[uuid.UUID]
    rng: random.Random
    new_id: Callable[[], uuid.UUID]

    def uniform(self) -> NewTransfer:
        """Between two distinct accounts chosen at random."""
        count = len(self.accounts)
        debit = self.rng.randrange(count)
        credit = self.rng.randrange(count - 1)
        credit += credit >= debit
        return self._transfer(self.accounts[debit], self.accounts[credit])

    def hot(self) -> NewTransfer:
        """From a random account to the first one, the hot account."""
        debit = 1 + self.rng.randrange(len(self.accounts) - 1)
        return self._transfer(self.accounts[debit], self.accounts[0])

    def _transfer(self, debit: uuid.UUID, credit: uuid.UUID) -> NewTransfer:
        return NewTransfer(
            id=self.new_id(),
            tenant_id=self.tenant_id,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=1,
            ledger=LEDGER,
            code=CODE,
        )


# ----------------------------------------------------------------------------- setup


async def create_accounts(ledger: Ledger, tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """Open `count` accounts without limit flags, so every transfer between them succeeds."""
    ids = [new_id() for _ in range(count)]
    for start in range(0, count, BATCH_SIZE_MAX):
        chunk = ids[start : start + BATCH_SIZE_MAX]
        results = await ledger.create_accounts(
            [
                NewAccount(
                    id=i, tenant_id=tenant_id, ledger=LEDGER, code=CODE, flags=AccountFlags.NONE
                )
                for i in chunk
            ]
        )
        failed = collections.Counter(
            str(r.status) for r in results if r.status is not CreateAccountStatus.OK
        )
        if failed:
            raise RuntimeError(f"creating accounts failed: {dict(failed)}")
    return ids


def ledger_settings(database_url: str, arguments: argparse.Namespace) -> Settings:
    return Settings(
        database_url=database_url,
        database_pool_size=arguments.single_clients + 2,
        ledger_batch_window_ms=arguments.window_ms,
        ledger_batch_size_max=BATCH_SIZE_MAX,
    )


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Outcome:
    phases: dict[str, PhaseResult]
    verify: VerifyReport
    pgbench: PgbenchResult


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_ledger_phases(
    admin_url: str, arguments: argparse.Namespace
) -> tuple[dict[str, PhaseResult], VerifyReport]:
    seconds: float = arguments.seconds
    rng = random.Random(arguments.seed)
    async with temporary_database(admin_url, "billfold_bench") as url:
        progress(f"migrating {url.split('?')[0]}")
        await asyncio.to_thread(upgrade, url)
        ledger = Ledger.from_settings(ledger_settings(url, arguments))
        await ledger.open()
        try:
            tenant_id = new_id()
            accounts = await create_accounts(ledger, tenant_id, ACCOUNT_COUNT)
            workload = Workload(tenant_id, accounts, rng, new_id)
            clients, singles = arguments.clients, arguments.single_clients
            plan = [
                PhasePlan("uniform", workload.uniform, ledger.submit, clients, ledger.writer),
                PhasePlan("hot", workload.hot, ledger.submit, clients, ledger.writer),
                PhasePlan("single", workload.uniform, ledger.create_transfers, singles, None),
            ]
            phases: dict[str, PhaseResult] = {}
            for phase in plan:
                await checkpoint(admin_url)
                progress(f"phase {phase.name}: {phase.clients} clients for {seconds:g} s")
                phases[phase.name] = await run_phase(phase, seconds=seconds)
            progress("verifying the ledger")
            report = await ledger.verify(grace_s=VERIFY_GRACE_S)
        finally:
            await ledger.close()
    return phases, report


async def run(arguments: argparse.Namespace) -> Outcome:
    admin_url = bench_database_url()
    await checkpoint(admin_url)
    progress(f"reference: pgbench TPC-B -s 10 -c 8 -j 2 -T {arguments.seconds}")
    pgbench = await run_pgbench(admin_url, seconds=arguments.seconds)
    phases, report = await run_ledger_phases(admin_url, arguments)
    return Outcome(phases, report, pgbench)


# ----------------------------------------------------------------------------- output


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _number(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def summary(outcome: Outcome) -> dict[str, object]:
    """The JSON figures, under the key names the issue gives."""
    uniform, hot, single = (outcome.phases[n] for n in ("uniform", "hot", "single"))
    return {
        "bench": "ledger",
        "uniform_tps": round(uniform.tps),
        "hot_tps": round(hot.tps),
        "single_tps": round(single.tps),
        "pgbench_tps": round(outcome.pgbench.tps),
        "uniform_ratio": _number(_ratio(uniform.tps, outcome.pgbench.tps), 2),
        "hot_vs_uniform": _number(_ratio(hot.tps, uniform.tps), 2),
        "uniform_p50_ms": _number(uniform.p50_ms, 2),
        "uniform_p99_ms": _number(uniform.p99_ms, 2),
        "hot_p50_ms": _number(hot.p50_ms, 2),
        "hot_p99_ms": _number(hot.p99_ms, 2),
        "single_p50_ms": _number(single.p50_ms, 2),
        "single_p99_ms": _number(single.p99_ms, 2),
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
            f"{phase.average_batch:,.1f}",
            f"{phase.batches:,}",
        ]
        for phase in outcome.phases.values()
    ]
    pgbench = outcome.pgbench
    rows.append(
        ["pgbench TPC-B", str(pgbench.clients), "", f"{pgbench.tps:,.0f}", "", "", "1.0", ""]
    )
    print_table(
        f"Ledger on PostgreSQL: {ACCOUNT_COUNT:,} accounts, {arguments.seconds} s per phase,"
        f" batch window {arguments.window_ms:g} ms",
        ["phase", "clients", "transfers", "per second", "p50 ms", "p99 ms", "avg batch", "batches"],
        rows,
    )


def print_ratios(figures: dict[str, object]) -> None:
    def row(name: str, value: object, target: float) -> list[str]:
        met = isinstance(value, float) and value >= target
        return [name, f"{value}", f">= {target:g}", "[green]yes[/]" if met else "[red]no[/]"]

    print_table(
        "Targets",
        ["ratio", "measured", "target", "met"],
        [
            row("uniform / pgbench", figures["uniform_ratio"], UNIFORM_RATIO_TARGET),
            row("hot / uniform", figures["hot_vs_uniform"], HOT_VS_UNIFORM_TARGET),
        ],
    )


def report_problems(outcome: Outcome) -> bool:
    """Print every sign of a ledger bug; True when there was none."""
    healthy = True
    for phase in outcome.phases.values():
        for failure, count in phase.failures.items():
            healthy = False
            console.print(f"[red]BUG[/] phase {phase.name}: {count:,} x {failure}")
    verify = outcome.verify
    if verify.ok:
        console.print(
            f"ledger verify: [green]ok[/] ({verify.accounts_checked:,} accounts,"
            f" {verify.transfers_checked:,} transfers, {verify.ledgers_checked} ledgers)"
        )
        return healthy
    console.print(f"[bold red]ledger verify FAILED[/]: {verify.problems_found:,} problems")
    for problem in verify.problems[:PROBLEMS_SHOWN_MAX]:
        console.print(f"  {problem.kind} {problem.subject}: {problem.detail}")
    return False


# ----------------------------------------------------------------------------- main


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="per phase")
    parser.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS, help="concurrent submitters (uniform, hot)"
    )
    parser.add_argument(
        "--single-clients", type=int, default=DEFAULT_SINGLE_CLIENTS, help="tasks in 'single'"
    )
    parser.add_argument(
        "--window-ms", type=float, default=DEFAULT_WINDOW_MS, help="batching writer window"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for account choice")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop (uvloop is what `billfold serve` runs under, via uvicorn)",
    )
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")
    if not 1 <= arguments.clients <= 100_000:
        parser.error("--clients must be between 1 and 100000")
    if not 1 <= arguments.single_clients <= 64:
        parser.error("--single-clients must be between 1 and 64")
    return arguments


def run_in_loop(coroutine: Coroutine[Any, Any, Outcome], loop: str) -> Outcome:
    if loop == "uvloop":
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    outcome = run_in_loop(run(arguments), arguments.loop)
    figures = summary(outcome)
    print_phases(outcome, arguments)
    print_ratios(figures)
    healthy = report_problems(outcome)
    print(json.dumps(figures), flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

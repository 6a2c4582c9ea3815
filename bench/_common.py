"""Helpers shared by the benchmarks: the server to use, throwaway databases, the `pgbench`
reference, percentiles and tables.

Benchmarks that need PostgreSQL read `BILLFOLD_BENCH_DATABASE_URL` (default: the local server
over its Unix socket, as `postgres`), create their own database on that server and drop it
afterwards, even when they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from rich.console import Console
from rich.table import Table

__all__ = [
    "DEFAULT_DATABASE_URL",
    "PgbenchResult",
    "bench_database_url",
    "checkpoint",
    "percentile",
    "print_table",
    "run_pgbench",
    "temporary_database",
    "with_database",
]

DEFAULT_DATABASE_URL = "postgresql://postgres@/postgres?host=/var/run/postgresql"
ADMIN_TIMEOUT_S = 30.0
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 8
PGBENCH_THREADS = 2
PGBENCH_INIT_TIMEOUT_S = 300.0
PGBENCH_GRACE_S = 60.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_TPS_LINE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)

TABLE_WIDTH_MIN = 110

console = Console(highlight=False)
if not console.is_terminal or console.width < TABLE_WIDTH_MIN:
    console.width = TABLE_WIDTH_MIN  # rich assumes 80 columns when piped, which wraps tables


def bench_database_url() -> str:
    """The PostgreSQL server the benchmarks run against (its admin database)."""
    return os.environ.get("BILLFOLD_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server, query string kept."""
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    rebuilt = f"{scheme}://{authority}/{database}"
    return f"{rebuilt}?{query}" if query else rebuilt


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=ADMIN_TIMEOUT_S)
    try:
        await connection.execute(statement, timeout=ADMIN_TIMEOUT_S)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def temporary_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """Create `<prefix>_<random>` on the server, yield its URL, drop it whatever happens."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def checkpoint(url: str) -> None:
    """Flush dirty pages now so a checkpoint does not land inside the next measurement.

    Best effort: needs superuser (or `pg_checkpoint` on PostgreSQL 15+)."""
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await _admin(url, "CHECKPOINT")


# ----------------------------------------------------------------------------- pgbench


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    tps: float
    clients: int
    threads: int
    scale: int


def _libpq_environment(url: str) -> dict[str, str]:
    """PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE for `url`, for libpq tools."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    environment: dict[str, str] = {}
    host = query.get("host") or (parts.hostname and unquote(parts.hostname))
    if host:
        environment["PGHOST"] = host
    port = query.get("port") or (str(parts.port) if parts.port else None)
    if port:
        environment["PGPORT"] = port
    if parts.username:
        environment["PGUSER"] = unquote(parts.username)
    if parts.password:
        environment["PGPASSWORD"] = unquote(parts.password)
    database = parts.path.lstrip("/")
    if database:
        environment["PGDATABASE"] = unquote(database)
    return environment


async def _run_tool(arguments: Sequence[str], url: str, *, timeout_s: float) -> str:
    """Run a libpq tool against `url`; its standard output, or an error with its stderr."""
    executable = shutil.which(arguments[0])
    if executable is None:
        raise RuntimeError(f"{arguments[0]} is not installed")
    process = await asyncio.create_subprocess_exec(
        executable,
        *arguments[1:],
        env={**os.environ, **_libpq_environment(url)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(arguments)} failed ({process.returncode}): {stderr.decode().strip()}"
        )
    return stdout.decode()


async def run_pgbench(admin_url: str, *, seconds: int) -> PgbenchResult:
    """TPC-B (`pgbench -i -s 10`, then `-c 8 -j 2 -T seconds`) in a throwaway database."""
    async with temporary_database(admin_url, "billfold_bench_pgbench") as url:
        await _run_tool(
            ["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE)], url, timeout_s=PGBENCH_INIT_TIMEOUT_S
        )
        await checkpoint(admin_url)
        output = await _run_tool(
            [
                "pgbench",
                "-c",
                str(PGBENCH_CLIENTS),
                "-j",
                str(PGBENCH_THREADS),
                "-T",
                str(seconds),
            ],
            url,
            timeout_s=seconds + PGBENCH_GRACE_S,
        )
    match = _TPS_LINE.search(output)
    if match is None:
        raise RuntimeError(f"no tps line in pgbench output:\n{output}")
    return PgbenchResult(float(match.group(1)), PGBENCH_CLIENTS, PGBENCH_THREADS, PGBENCH_SCALE)


# ----------------------------------------------------------------------------- ids


# ----------------------------------------------------------------------------- figures


def process_stat(pid: int | str) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` after the command (state first), or None when the
    process is gone or this is not Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def stat_cpu_s(fields: Sequence[str]) -> float:
    """CPU seconds (user + system) of a process from its `process_stat` fields."""
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in [0, 1]) of already sorted values; NaN if
    there are none."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(fraction * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on standard output; the first column left-aligned, the others right."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)

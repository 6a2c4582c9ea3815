"""Upgrades of a live installation: a run is seen whole or not at all, and processes that
upgrade at the same time queue instead of applying a revision twice, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import asyncpg
from alembic import command
from alembic.script import ScriptDirectory

from billfold.migrations import alembic_config, upgrade
from migration_support import whole_schema_differences

HEAD = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_current_head()
_UPGRADE = "import sys; from billfold.migrations import upgrade; upgrade(sys.argv[1])"


def _versions_seen_while(database_url: str, upgrading: threading.Thread) -> set[str | None]:
    """Every alembic_version another connection reads while `upgrading` runs."""
    seen: set[str | None] = set()
    if database_url.startswith("sqlite"):
        reader = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            upgrading.start()
            while upgrading.is_alive():
                seen.update(
                    row[0] for row in reader.execute("SELECT version_num FROM alembic_version")
                )
        finally:
            reader.close()
        return seen

    async def poll() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            upgrading.start()
            while upgrading.is_alive():
                seen.update(
                    row[0]
                    for row in await connection.fetch("SELECT version_num FROM alembic_version")
                )
        finally:
            await connection.close()

    asyncio.run(poll())
    return seen


def test_an_upgrade_is_seen_whole_or_not_at_all(isolated_database_url: str) -> None:
    """Another process reads the revision the database was at or the head, never one in
    between: it cannot start applying the next revision of a run still under way (SQLite
    used to commit each revision on its own)."""
    url = isolated_database_url
    command.downgrade(alembic_config(url), "0010_events")
    failures: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(url)
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    seen = _versions_seen_while(url, threading.Thread(target=run))
    assert failures == []
    assert seen <= {"0010_events", HEAD}
    assert whole_schema_differences(url) == []


@contextlib.contextmanager
def _upgrades(database_url: str, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` upgrades started at once. One still running when the block ends (an assertion
    failed) is killed, and every pipe is closed: none outlives its test, to be reported as an
    unclosed file in whichever test the garbage collector runs next."""
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _UPGRADE, database_url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            for _ in range(count)
        ]
        try:
            yield processes
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()


def _finished(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    outcomes = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        outcomes.append((process.returncode, stderr.strip().splitlines()[-1:]))
    return [(code, "".join(last)) for code, last in outcomes]


async def _upgrades_queued_behind(
    database_url: str, count: int, stack: contextlib.ExitStack
) -> list[subprocess.Popen[str]]:
    """Start `count` upgrades on `stack` while this connection locks the deliveries (0028
    changes them), wait until every one waits on a lock, then let them go."""
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE events_webhook_deliveries IN ACCESS EXCLUSIVE MODE")
        processes = stack.enter_context(_upgrades(database_url, count))
        deadline = time.monotonic() + 60
        waiting = 0
        while waiting < count:
            assert time.monotonic() < deadline, "the upgrades never reached their locks"
            assert all(process.poll() is None for process in processes), "an upgrade ended"
            await asyncio.sleep(0.05)
            # pg_locks only: pg_stat_activity is read once per transaction, so a join with
            # it would never see an upgrade whose backend started after the first read.
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        await transaction.rollback()
        return processes
    finally:
        await connection.close()


def test_upgrades_started_together_queue(isolated_database_url: str) -> None:
    """Two `billfold db upgrade` at once (deployment jobs on PostgreSQL; `serve` and
    `worker` starting on SQLite, each migrating first): both succeed, the database is at the
    head with every revision applied once. On PostgreSQL both are held at the first
    revision's lock, so that without the advisory lock both would have read the same
    revision (the second then failed on the first's index); on SQLite they race freely."""
    url = isolated_database_url
    command.downgrade(alembic_config(url), "0027_deliveries_event_index")
    with contextlib.ExitStack() as stack:
        if url.startswith("sqlite"):
            processes = stack.enter_context(_upgrades(url, 2))
        else:
            processes = asyncio.run(_upgrades_queued_behind(url, 2, stack))
        assert _finished(processes) == [(0, ""), (0, "")]
    assert whole_schema_differences(url) == []
    command.upgrade(alembic_config(url), "head")  # and once more: nothing to do
    assert whole_schema_differences(url) == []


def test_the_migrated_schema_is_the_models(isolated_database_url: str) -> None:
    """Every table, column, type, nullability, server default, index, unique and foreign
    key the models declare is what the migrations built (CHECK constraints are not
    compared by Alembic; each domain's migration test checks its own)."""
    assert whole_schema_differences(isolated_database_url) == []

"""The ledger on SQLite (the embedded default): WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`.

SQLite allows one writer at a time, so the database's own write lock is the ledger's lock.
Every call runs on one dedicated thread with two connections: one for the write
transaction, one for snapshot reads (WAL lets readers proceed while a write is open).
UUIDs are 32-digit hex text and amounts 39-digit zero-padded text, as `ledger.models`
declares them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from billfold.ledger.models import AMOUNT_DIGITS
from billfold.ledger.repository import ACCOUNT_COLUMNS, BALANCE_COLUMNS, TRANSFER_COLUMNS
from billfold.ledger.state_machine import PendingRow
from billfold.ledger.types import (
    Account,
    AccountStatus,
    BalanceRecord,
    Balances,
    PendingStatus,
    Transfer,
)

__all__ = ["SqliteLedgerRepository", "connect_sqlite"]

_T = TypeVar("_T")
_ACCOUNTS = ", ".join(ACCOUNT_COLUMNS)
_TRANSFERS = ", ".join(TRANSFER_COLUMNS)
_BALANCES = ", ".join(BALANCE_COLUMNS)
_BUSY_TIMEOUT_MS = 30_000


def connect_sqlite(path: str) -> sqlite3.Connection:
    """A connection with the durability settings the ledger relies on."""
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return connection


def _amount(value: int) -> str:
    return f"{value:0{AMOUNT_DIGITS}d}"


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _ids(values: Collection[uuid.UUID]) -> str:
    return json.dumps([value.hex for value in values])


def _account(row: Sequence[Any]) -> Account:
    return Account(
        id=uuid.UUID(hex=row[0]),
        tenant_id=uuid.UUID(hex=row[1]),
        ledger=row[2],
        code=row[3],
        flags=row[4],
        owner_ref=row[5],
        user_data=row[6],
        status=AccountStatus(row[7]),
        debits_pending=int(row[8]),
        debits_posted=int(row[9]),
        credits_pending=int(row[10]),
        credits_posted=int(row[11]),
        timestamp=row[12],
    )


def _transfer(row: Sequence[Any]) -> Transfer:
    return Transfer(
        id=uuid.UUID(hex=row[0]),
        tenant_id=uuid.UUID(hex=row[1]),
        debit_account_id=uuid.UUID(hex=row[2]),
        credit_account_id=uuid.UUID(hex=row[3]),
        amount=int(row[4]),
        ledger=row[5],
        code=row[6],
        flags=row[7],
        pending_id=None if row[8] is None else uuid.UUID(hex=row[8]),
        timeout_s=row[9],
        user_data=row[10],
        timestamp=row[11],
        expires_at=row[12],
    )


def _balance(row: Sequence[Any]) -> BalanceRecord:
    return BalanceRecord(
        account_id=uuid.UUID(hex=row[0]),
        transfer_id=uuid.UUID(hex=row[1]),
        timestamp=row[2],
        debits_pending=int(row[3]),
        debits_posted=int(row[4]),
        credits_pending=int(row[5]),
        credits_posted=int(row[6]),
    )


class _SqliteReader:
    def __init__(self, repository: SqliteLedgerRepository, connection: sqlite3.Connection) -> None:
        self._repository = repository
        self._connection = connection

    async def _fetch(self, sql: str, *parameters: object) -> list[Any]:
        def run() -> list[Any]:
            return self._connection.execute(sql, parameters).fetchall()

        return await self._repository.run(run)

    async def accounts_by_id(self, ids: Collection[uuid.UUID]) -> list[Account]:
        rows = await self._fetch(
            f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE id IN (SELECT value FROM json_each(?))",
            _ids(ids),
        )
        return [_account(row) for row in rows]

    async def transfers_by_id(self, ids: Collection[uuid.UUID]) -> list[Transfer]:
        rows = await self._fetch(
            f"SELECT {_TRANSFERS} FROM ledger_transfers"
            " WHERE id IN (SELECT value FROM json_each(?))",
            _ids(ids),
        )
        return [_transfer(row) for row in rows]

    async def pending_statuses(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PendingStatus]:
        rows = await self._fetch(
            "SELECT transfer_id, status FROM ledger_pending_transfers"
            " WHERE transfer_id IN (SELECT value FROM json_each(?))",
            _ids(ids),
        )
        return {uuid.UUID(hex=row[0]): PendingStatus(row[1]) for row in rows}

    async def account_transfers(
        self,
        *,
        account_id: uuid.UUID,
        after_timestamp: int,
        before_timestamp: int,
        limit: int,
        descending: bool,
    ) -> list[Transfer]:
        order = "DESC" if descending else "ASC"
        rows = await self._fetch(
            f"""
            SELECT * FROM (
                SELECT * FROM (SELECT {_TRANSFERS} FROM ledger_transfers
                  WHERE debit_account_id = ?1 AND timestamp > ?2 AND timestamp < ?3
                  ORDER BY timestamp {order} LIMIT ?4)
                UNION ALL
                SELECT * FROM (SELECT {_TRANSFERS} FROM ledger_transfers
                  WHERE credit_account_id = ?1 AND timestamp > ?2 AND timestamp < ?3
                  ORDER BY timestamp {order} LIMIT ?4)
            ) ORDER BY timestamp {order} LIMIT ?4
            """,
            account_id.hex,
            after_timestamp,
            before_timestamp,
            limit,
        )
        return [_transfer(row) for row in rows]

    async def tenant_accounts(
        self, *, tenant_id: uuid.UUID, after_timestamp: int, limit: int
    ) -> list[Account]:
        rows = await self._fetch(
            f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE tenant_id = ? AND timestamp > ?"
            " ORDER BY timestamp LIMIT ?",
            tenant_id.hex,
            after_timestamp,
            limit,
        )
        return [_account(row) for row in rows]

    async def balance_history(
        self,
        *,
        account_id: uuid.UUID,
        as_of_timestamp: int | None,
        after_timestamp: int | None,
        limit: int,
    ) -> list[BalanceRecord]:
        if as_of_timestamp is not None:
            rows = await self._fetch(
                f"SELECT {_BALANCES} FROM ledger_account_balances"
                " WHERE account_id = ? AND timestamp <= ? ORDER BY timestamp DESC LIMIT 1",
                account_id.hex,
                as_of_timestamp,
            )
        else:
            rows = await self._fetch(
                f"SELECT {_BALANCES} FROM ledger_account_balances"
                " WHERE account_id = ? AND timestamp > ? ORDER BY timestamp LIMIT ?",
                account_id.hex,
                after_timestamp if after_timestamp is not None else -1,
                limit,
            )
        return [_balance(row) for row in rows]

    async def last_timestamp(self) -> int:
        rows = await self._fetch("SELECT last_timestamp FROM ledger_clock WHERE id = 1")
        return int(rows[0][0])

    async def transfers_after(self, *, after_timestamp: int, limit: int) -> list[Transfer]:
        rows = await self._fetch(
            f"SELECT {_TRANSFERS} FROM ledger_transfers WHERE timestamp > ?"
            " ORDER BY timestamp LIMIT ?",
            after_timestamp,
            limit,
        )
        return [_transfer(row) for row in rows]

    async def all_accounts(self, *, chunk_size: int) -> AsyncIterator[list[Account]]:
        after = ""
        while True:
            rows = await self._fetch(
                f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE id > ? ORDER BY id LIMIT ?",
                after,
                chunk_size,
            )
            if not rows:
                return
            yield [_account(row) for row in rows]
            after = rows[-1][0]

    async def all_transfers(self, *, chunk_size: int) -> AsyncIterator[list[Transfer]]:
        after = -1
        while True:
            rows = await self._fetch(
                f"SELECT {_TRANSFERS} FROM ledger_transfers WHERE timestamp > ?"
                " ORDER BY timestamp LIMIT ?",
                after,
                chunk_size,
            )
            if not rows:
                return
            yield [_transfer(row) for row in rows]
            after = rows[-1][11]

    async def open_pending(self, *, chunk_size: int) -> AsyncIterator[list[PendingRow]]:
        after = ""
        while True:
            rows = await self._fetch(
                "SELECT transfer_id, tenant_id, expires_at, status FROM ledger_pending_transfers"
                " WHERE status = 'pending' AND transfer_id > ? ORDER BY transfer_id LIMIT ?",
                after,
                chunk_size,
            )
            if not rows:
                return
            yield [
                PendingRow(
                    uuid.UUID(hex=row[0]), uuid.UUID(hex=row[1]), row[2], PendingStatus(row[3])
                )
                for row in rows
            ]
            after = rows[-1][0]


class _SqliteWriteTransaction(_SqliteReader):
    async def _execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        def run() -> None:
            self._connection.executemany(sql, rows)

        if rows:
            await self._repository.run(run)

    async def lock_clock(self) -> int:
        # BEGIN IMMEDIATE already holds SQLite's single write lock: the clock is read only.
        return await self.last_timestamp()

    async def save_clock(self, last_timestamp: int) -> None:
        await self._fetch("UPDATE ledger_clock SET last_timestamp = ? WHERE id = 1", last_timestamp)

    async def lock_accounts(self, ids: Collection[uuid.UUID]) -> list[Account]:
        return await self.accounts_by_id(ids)

    async def insert_accounts(self, accounts: Sequence[Account]) -> None:
        await self._execute_many(
            f"INSERT INTO ledger_accounts ({_ACCOUNTS}) VALUES ({', '.join('?' * 13)})",
            [
                (
                    a.id.hex,
                    a.tenant_id.hex,
                    a.ledger,
                    a.code,
                    a.flags,
                    a.owner_ref,
                    a.user_data,
                    a.status.value,
                    _amount(a.debits_pending),
                    _amount(a.debits_posted),
                    _amount(a.credits_pending),
                    _amount(a.credits_posted),
                    a.timestamp,
                )
                for a in accounts
            ],
        )

    async def update_balances(self, balances: Sequence[Balances]) -> None:
        await self._execute_many(
            "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?,"
            " credits_pending = ?, credits_posted = ? WHERE id = ?",
            [
                (
                    _amount(b.debits_pending),
                    _amount(b.debits_posted),
                    _amount(b.credits_pending),
                    _amount(b.credits_posted),
                    b.account_id.hex,
                )
                for b in balances
            ],
        )

    async def update_status(self, account_id: uuid.UUID, status: AccountStatus) -> None:
        await self._fetch(
            "UPDATE ledger_accounts SET status = ? WHERE id = ?", status.value, account_id.hex
        )

    async def insert_transfers(self, transfers: Sequence[Transfer]) -> None:
        await self._execute_many(
            f"INSERT INTO ledger_transfers ({_TRANSFERS}) VALUES ({', '.join('?' * 13)})",
            [
                (
                    t.id.hex,
                    t.tenant_id.hex,
                    t.debit_account_id.hex,
                    t.credit_account_id.hex,
                    _amount(t.amount),
                    t.ledger,
                    t.code,
                    t.flags,
                    _id(t.pending_id),
                    t.timeout_s,
                    t.user_data,
                    t.timestamp,
                    t.expires_at,
                )
                for t in transfers
            ],
        )

    async def insert_pending(self, rows: Collection[PendingRow]) -> None:
        await self._execute_many(
            "INSERT INTO ledger_pending_transfers (transfer_id, tenant_id, expires_at, status)"
            " VALUES (?, ?, ?, ?)",
            [(r.transfer_id.hex, r.tenant_id.hex, r.expires_at, r.status.value) for r in rows],
        )

    async def update_pending(self, statuses: Mapping[uuid.UUID, PendingStatus]) -> None:
        await self._execute_many(
            "UPDATE ledger_pending_transfers SET status = ? WHERE transfer_id = ?",
            [(status.value, transfer_id.hex) for transfer_id, status in statuses.items()],
        )

    async def insert_history(self, records: Sequence[BalanceRecord]) -> None:
        await self._execute_many(
            f"INSERT INTO ledger_account_balances ({_BALANCES}) VALUES ({', '.join('?' * 7)})",
            [
                (
                    r.account_id.hex,
                    r.transfer_id.hex,
                    r.timestamp,
                    _amount(r.debits_pending),
                    _amount(r.debits_posted),
                    _amount(r.credits_pending),
                    _amount(r.credits_posted),
                )
                for r in records
            ],
        )

    async def due_pending(self, *, now_ns: int, limit: int) -> list[Transfer]:
        rows = await self._fetch(
            f"SELECT {', '.join('t.' + c for c in TRANSFER_COLUMNS)}"
            " FROM ledger_pending_transfers p JOIN ledger_transfers t ON t.id = p.transfer_id"
            " WHERE p.status = 'pending' AND p.expires_at IS NOT NULL AND p.expires_at <= ?"
            " ORDER BY p.expires_at LIMIT ?",
            now_ns,
            limit,
        )
        return [_transfer(row) for row in rows]


class SqliteLedgerRepository:
    """The ledger's tables in one SQLite file."""

    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    async def run(self, function: Callable[[], _T]) -> _T:
        """Run `function` on the repository's own thread."""
        if self._executor is None:
            raise RuntimeError("the ledger repository is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billfold-sqlite")
        self._writer = await self.run(lambda: connect_sqlite(self._path))
        self._reader = await self.run(lambda: connect_sqlite(self._path))

    async def close(self) -> None:
        for connection in (self._writer, self._reader):
            if connection is not None:
                await self.run(connection.close)
        self._writer = self._reader = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def ping(self) -> None:
        async with self.read() as reader:
            await reader.last_timestamp()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteWriteTransaction]:
        connection = self._writer
        if connection is None:
            raise RuntimeError("the ledger repository is not open")
        async with self._write_lock:
            await self.run(lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteWriteTransaction(self, connection)
                await self.run(lambda: connection.execute("COMMIT"))
            except BaseException:
                if connection.in_transaction:
                    await self.run(lambda: connection.execute("ROLLBACK"))
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteReader]:
        connection = self._reader
        if connection is None:
            raise RuntimeError("the ledger repository is not open")
        async with self._read_lock:
            await self.run(lambda: connection.execute("BEGIN"))
            try:
                yield _SqliteReader(self, connection)
            finally:
                await self.run(lambda: connection.execute("COMMIT"))

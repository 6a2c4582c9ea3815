"""The ledger on PostgreSQL, through asyncpg: COPY for new rows, one UPDATE … FROM unnest for
balances, and `SELECT … FOR UPDATE` on the clock row then on accounts in id order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

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

__all__ = ["ACQUIRE_TIMEOUT_S", "SERVER_SETTINGS", "PostgresLedgerRepository", "reset_released"]

ACQUIRE_TIMEOUT_S = 30.0
"""Longest wait for a pooled connection before the call fails."""
SERVER_SETTINGS = {"enable_seqscan": "off", "jit": "off"}
"""The ledger's statements are all lookups by key and keyset pages: index walks, whatever
the statistics say. A new ledger's tables have none until the first autoanalyze, up to a
minute after they start filling, and PostgreSQL's guesses chose sequential scans that grew
with the table: the lookup of a batch's transfer ids (its generic plan, made while the
table was empty, 11.8 ms a batch at 6,000 transfers in bench/api.py), and, planned afresh,
the sequencer's read of the next transfers by timestamp (a scan and a sort). `jit` off: a
statement that must scan anyway is then costed past every JIT threshold."""

_Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
_ACCOUNTS = ", ".join(ACCOUNT_COLUMNS)
_TRANSFERS = ", ".join(TRANSFER_COLUMNS)
_BALANCES = ", ".join(BALANCE_COLUMNS)


def _account(row: asyncpg.Record) -> Account:
    return Account(
        id=row[0],
        tenant_id=row[1],
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


def _transfer(row: asyncpg.Record) -> Transfer:
    return Transfer(
        id=row[0],
        tenant_id=row[1],
        debit_account_id=row[2],
        credit_account_id=row[3],
        amount=int(row[4]),
        ledger=row[5],
        code=row[6],
        flags=row[7],
        pending_id=row[8],
        timeout_s=row[9],
        user_data=row[10],
        timestamp=row[11],
        expires_at=row[12],
    )


def _balance(row: asyncpg.Record) -> BalanceRecord:
    return BalanceRecord(
        account_id=row[0],
        transfer_id=row[1],
        timestamp=row[2],
        debits_pending=int(row[3]),
        debits_posted=int(row[4]),
        credits_pending=int(row[5]),
        credits_posted=int(row[6]),
    )


class _PostgresReader:
    def __init__(
        self, connection: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]
    ) -> None:
        self._connection = connection

    async def accounts_by_id(self, ids: Collection[uuid.UUID]) -> list[Account]:
        rows = await self._connection.fetch(
            f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE id = ANY($1::uuid[])", list(ids)
        )
        return [_account(row) for row in rows]

    async def transfers_by_id(self, ids: Collection[uuid.UUID]) -> list[Transfer]:
        rows = await self._connection.fetch(
            f"SELECT {_TRANSFERS} FROM ledger_transfers WHERE id = ANY($1::uuid[])", list(ids)
        )
        return [_transfer(row) for row in rows]

    async def pending_statuses(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PendingStatus]:
        rows = await self._connection.fetch(
            "SELECT transfer_id, status FROM ledger_pending_transfers"
            " WHERE transfer_id = ANY($1::uuid[])",
            list(ids),
        )
        return {row[0]: PendingStatus(row[1]) for row in rows}

    async def account_transfers(
        self,
        *,
        account_id: uuid.UUID,
        after_timestamp: int,
        before_timestamp: int,
        limit: int,
        descending: bool,
    ) -> list[Transfer]:
        # Two index range scans merged, instead of one OR that cannot use either index.
        order = "DESC" if descending else "ASC"
        rows = await self._connection.fetch(
            f"""
            SELECT {_TRANSFERS} FROM (
                (SELECT {_TRANSFERS} FROM ledger_transfers
                  WHERE debit_account_id = $1 AND timestamp > $2 AND timestamp < $3
                  ORDER BY timestamp {order} LIMIT $4)
                UNION ALL
                (SELECT {_TRANSFERS} FROM ledger_transfers
                  WHERE credit_account_id = $1 AND timestamp > $2 AND timestamp < $3
                  ORDER BY timestamp {order} LIMIT $4)
            ) AS both_sides ORDER BY timestamp {order} LIMIT $4
            """,
            account_id,
            after_timestamp,
            before_timestamp,
            limit,
        )
        return [_transfer(row) for row in rows]

    async def tenant_accounts(
        self, *, tenant_id: uuid.UUID, after_timestamp: int, limit: int
    ) -> list[Account]:
        rows = await self._connection.fetch(
            f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE tenant_id = $1 AND timestamp > $2"
            " ORDER BY timestamp LIMIT $3",
            tenant_id,
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
            rows = await self._connection.fetch(
                f"SELECT {_BALANCES} FROM ledger_account_balances"
                " WHERE account_id = $1 AND timestamp <= $2 ORDER BY timestamp DESC LIMIT 1",
                account_id,
                as_of_timestamp,
            )
        else:
            rows = await self._connection.fetch(
                f"SELECT {_BALANCES} FROM ledger_account_balances"
                " WHERE account_id = $1 AND timestamp > $2 ORDER BY timestamp LIMIT $3",
                account_id,
                after_timestamp if after_timestamp is not None else -1,
                limit,
            )
        return [_balance(row) for row in rows]

    async def last_timestamp(self) -> int:
        value = await self._connection.fetchval(
            "SELECT last_timestamp FROM ledger_clock WHERE id = 1"
        )
        return int(value)

    async def transfers_after(self, *, after_timestamp: int, limit: int) -> list[Transfer]:
        rows = await self._connection.fetch(
            f"SELECT {_TRANSFERS} FROM ledger_transfers WHERE timestamp > $1"
            " ORDER BY timestamp LIMIT $2",
            after_timestamp,
            limit,
        )
        return [_transfer(row) for row in rows]

    async def all_accounts(self, *, chunk_size: int) -> AsyncIterator[list[Account]]:
        after = uuid.UUID(int=0)
        while True:
            rows = await self._connection.fetch(
                f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE id > $1 ORDER BY id LIMIT $2",
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
            rows = await self._connection.fetch(
                f"SELECT {_TRANSFERS} FROM ledger_transfers WHERE timestamp > $1"
                " ORDER BY timestamp LIMIT $2",
                after,
                chunk_size,
            )
            if not rows:
                return
            yield [_transfer(row) for row in rows]
            after = rows[-1][11]

    async def open_pending(self, *, chunk_size: int) -> AsyncIterator[list[PendingRow]]:
        after = uuid.UUID(int=0)
        while True:
            rows = await self._connection.fetch(
                "SELECT transfer_id, tenant_id, expires_at, status FROM ledger_pending_transfers"
                " WHERE status = 'pending' AND transfer_id > $1 ORDER BY transfer_id LIMIT $2",
                after,
                chunk_size,
            )
            if not rows:
                return
            yield [PendingRow(row[0], row[1], row[2], PendingStatus(row[3])) for row in rows]
            after = rows[-1][0]


class _PostgresWriteTransaction(_PostgresReader):
    async def lock_clock(self) -> int:
        value = await self._connection.fetchval(
            "SELECT last_timestamp FROM ledger_clock WHERE id = 1 FOR UPDATE"
        )
        return int(value)

    async def save_clock(self, last_timestamp: int) -> None:
        await self._connection.execute(
            "UPDATE ledger_clock SET last_timestamp = $1 WHERE id = 1", last_timestamp
        )

    async def lock_accounts(self, ids: Collection[uuid.UUID]) -> list[Account]:
        rows = await self._connection.fetch(
            f"SELECT {_ACCOUNTS} FROM ledger_accounts WHERE id = ANY($1::uuid[])"
            " ORDER BY id FOR UPDATE",
            list(ids),
        )
        return [_account(row) for row in rows]

    async def insert_accounts(self, accounts: Sequence[Account]) -> None:
        await self._connection.copy_records_to_table(
            "ledger_accounts",
            columns=ACCOUNT_COLUMNS,
            records=[
                (
                    a.id,
                    a.tenant_id,
                    a.ledger,
                    a.code,
                    a.flags,
                    a.owner_ref,
                    a.user_data,
                    a.status.value,
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                    a.timestamp,
                )
                for a in accounts
            ],
        )

    async def update_balances(self, balances: Sequence[Balances]) -> None:
        await self._connection.execute(
            """
            UPDATE ledger_accounts AS a
               SET debits_pending = u.debits_pending, debits_posted = u.debits_posted,
                   credits_pending = u.credits_pending, credits_posted = u.credits_posted
              FROM unnest($1::uuid[], $2::text[]::numeric[], $3::text[]::numeric[],
                          $4::text[]::numeric[], $5::text[]::numeric[])
                   AS u(id, debits_pending, debits_posted, credits_pending, credits_posted)
             WHERE a.id = u.id
            """,
            # Decimal text is far cheaper to encode than asyncpg's int-to-numeric path.
            [b.account_id for b in balances],
            [str(b.debits_pending) for b in balances],
            [str(b.debits_posted) for b in balances],
            [str(b.credits_pending) for b in balances],
            [str(b.credits_posted) for b in balances],
        )

    async def update_status(self, account_id: uuid.UUID, status: AccountStatus) -> None:
        await self._connection.execute(
            "UPDATE ledger_accounts SET status = $2 WHERE id = $1", account_id, status.value
        )

    async def insert_transfers(self, transfers: Sequence[Transfer]) -> None:
        await self._connection.copy_records_to_table(
            "ledger_transfers",
            columns=TRANSFER_COLUMNS,
            records=[
                (
                    t.id,
                    t.tenant_id,
                    t.debit_account_id,
                    t.credit_account_id,
                    t.amount,
                    t.ledger,
                    t.code,
                    t.flags,
                    t.pending_id,
                    t.timeout_s,
                    t.user_data,
                    t.timestamp,
                    t.expires_at,
                )
                for t in transfers
            ],
        )

    async def insert_pending(self, rows: Collection[PendingRow]) -> None:
        await self._connection.copy_records_to_table(
            "ledger_pending_transfers",
            columns=("transfer_id", "tenant_id", "expires_at", "status"),
            records=[(r.transfer_id, r.tenant_id, r.expires_at, r.status.value) for r in rows],
        )

    async def update_pending(self, statuses: Mapping[uuid.UUID, PendingStatus]) -> None:
        await self._connection.execute(
            "UPDATE ledger_pending_transfers AS p SET status = u.status"
            " FROM unnest($1::uuid[], $2::text[]) AS u(id, status) WHERE p.transfer_id = u.id",
            list(statuses),
            [status.value for status in statuses.values()],
        )

    async def insert_history(self, records: Sequence[BalanceRecord]) -> None:
        await self._connection.copy_records_to_table(
            "ledger_account_balances",
            columns=BALANCE_COLUMNS,
            records=[
                (
                    r.account_id,
                    r.transfer_id,
                    r.timestamp,
                    r.debits_pending,
                    r.debits_posted,
                    r.credits_pending,
                    r.credits_posted,
                )
                for r in records
            ],
        )

    async def due_pending(self, *, now_ns: int, limit: int) -> list[Transfer]:
        rows = await self._connection.fetch(
            f"SELECT {', '.join('t.' + c for c in TRANSFER_COLUMNS)}"
            " FROM ledger_pending_transfers p JOIN ledger_transfers t ON t.id = p.transfer_id"
            " WHERE p.status = 'pending' AND p.expires_at IS NOT NULL AND p.expires_at <= $1"
            " ORDER BY p.expires_at LIMIT $2",
            now_ns,
            limit,
        )
        return [_transfer(row) for row in rows]


async def reset_released(connection: asyncpg.Connection[Any]) -> None:
    """What a connection returned to the ledger's pool needs before its next use: only a
    transaction left open rolled back. The ledger keeps no session state (no advisory
    locks, LISTEN, cursors or SET; its settings are the connection's startup ones), and
    asyncpg's default reset sent `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` after every call: a round trip per ledger call (a read such as the worker's
    look for new transfers was two statements, this and the read)."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class PostgresLedgerRepository:
    """The ledger's tables on PostgreSQL, through an asyncpg connection pool."""

    backend = "postgresql"

    def __init__(self, dsn: str, *, pool_size: int, connect_timeout_s: float) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool[Any] | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._connect_timeout_s,
            command_timeout=300,
            server_settings=SERVER_SETTINGS,
            reset=reset_released,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError("the ledger repository is not open")
        return self._pool

    async def ping(self) -> None:
        async with self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as connection:
            await connection.fetchval("SELECT last_timestamp FROM ledger_clock WHERE id = 1")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresWriteTransaction]:
        async with (
            self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as connection,
            connection.transaction(),
        ):
            yield _PostgresWriteTransaction(connection)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PostgresReader]:
        async with (
            self._require_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield _PostgresReader(connection)

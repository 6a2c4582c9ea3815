"""`Ledger`: the one object the rest of Billfold holds to use the ledger.

It owns the repository (PostgreSQL or SQLite), the clock and the batching writer, and scopes
every read to a tenant: an id that belongs to another tenant is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import structlog

from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import parse_database_url
from billfold.kit.errors import invariant
from billfold.kit.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from billfold.kit.settings import Settings
from billfold.ledger import service
from billfold.ledger.cache import AccountCache
from billfold.ledger.errors import AccountNotFound
from billfold.ledger.repository import LedgerRepository
from billfold.ledger.repository_postgres import PostgresLedgerRepository
from billfold.ledger.repository_sqlite import SqliteLedgerRepository
from billfold.ledger.types import (
    BATCH_SIZE_MAX,
    Account,
    AccountFlags,
    AccountResult,
    AccountStatus,
    BalanceRecord,
    NewAccount,
    NewTransfer,
    Transfer,
    TransferResult,
)
from billfold.ledger.verify import VerifyReport, verify_ledger
from billfold.ledger.writer import BatchingWriter, Segments

__all__ = ["Ledger", "repository_for"]

log = structlog.get_logger(__name__)


def repository_for(settings: Settings) -> LedgerRepository:
    """The repository for `settings.database_url`."""
    target = parse_database_url(settings.database_url)
    if target.kind == "sqlite":
        assert target.sqlite_path is not None
        return SqliteLedgerRepository(target.sqlite_path)
    return PostgresLedgerRepository(
        target.asyncpg_dsn,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )


class Ledger:
    """Accounts and transfers for every tenant, over one database."""

    def __init__(
        self,
        repository: LedgerRepository,
        *,
        clock: Clock | None = None,
        batch_window_ms: float = 2.0,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_size_max: int = 100_000,
        account_cache_size_max: int = 1_000_000,
    ) -> None:
        self.repository = repository
        self.clock: Clock = clock or SystemClock()
        self.account_cache = AccountCache(size_max=account_cache_size_max)
        self.pipeline = _Applier(self)
        self.writer = BatchingWriter(
            self.pipeline,
            window_s=batch_window_ms / 1000,
            batch_size_max=batch_size_max,
            queue_size_max=queue_size_max,
        )
        self._expiry_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Ledger:
        return cls(
            repository_for(settings),
            clock=clock,
            batch_window_ms=settings.ledger_batch_window_ms,
            batch_size_max=settings.ledger_batch_size_max,
            queue_size_max=settings.ledger_queue_size_max,
        )

    async def open(self) -> None:
        await self.repository.open()
        self.writer.start()

    async def close(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
            self._expiry_task = None
        await self.writer.close()
        await self.repository.close()

    # -- writes

    async def create_accounts(self, accounts: Sequence[NewAccount]) -> list[AccountResult]:
        async with self.repository.write() as transaction:
            return await service.create_accounts(transaction, accounts, clock=self.clock)

    async def create_transfers(self, transfers: Sequence[NewTransfer]) -> list[TransferResult]:
        """Apply one batch in a database transaction of its own, in order with everything
        else this process writes (it goes through the writer, unmerged)."""
        return await self.writer.submit(transfers, solo=True)

    async def submit(self, transfers: Sequence[NewTransfer]) -> list[TransferResult]:
        """Apply one request's transfers through the batching writer (shared transactions)."""
        return await self.writer.submit(transfers)

    async def expire_pending(self, *, limit: int = BATCH_SIZE_MAX) -> list[Transfer]:
        async with self.repository.write() as transaction:
            return await service.expire_pending_transfers(
                transaction, clock=self.clock, limit=limit
            )

    async def set_account_status(
        self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, status: AccountStatus
    ) -> None:
        async with self.repository.write() as transaction:
            await service.set_account_status(
                transaction, tenant_id=tenant_id, account_id=account_id, status=status
            )

    def start_expiry(self, *, interval_s: float) -> None:
        """Sweep timed-out pending transfers every `interval_s` in the background."""
        invariant(interval_s > 0, "expiry interval is positive")
        if self._expiry_task is None:
            self._expiry_task = asyncio.create_task(self._expire_forever(interval_s))

    async def _expire_forever(self, interval_s: float) -> None:
        while True:
            try:
                expired = await self.expire_pending()
                if expired:
                    log.info("ledger.pending_expired", count=len(expired))
                if len(expired) == BATCH_SIZE_MAX:
                    continue  # more are due: sweep again at once
            except Exception:  # the sweep retries next interval; a crash would stop expiries
                log.exception("ledger.expiry_failed")
            await asyncio.sleep(interval_s)

    # -- reads, scoped to one tenant

    async def lookup_accounts(
        self, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> list[Account]:
        invariant(len(ids) <= BATCH_SIZE_MAX, "lookups are bounded")
        async with self.repository.read() as reader:
            found = {a.id: a for a in await reader.accounts_by_id(set(ids))}
        return [found[i] for i in ids if i in found and found[i].tenant_id == tenant_id]

    async def get_account(self, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> Account:
        accounts = await self.lookup_accounts(tenant_id=tenant_id, ids=[account_id])
        if not accounts:
            raise AccountNotFound(f"no account {account_id}")
        return accounts[0]

    async def lookup_transfers(
        self, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> list[Transfer]:
        invariant(len(ids) <= BATCH_SIZE_MAX, "lookups are bounded")
        async with self.repository.read() as reader:
            found = {t.id: t for t in await reader.transfers_by_id(set(ids))}
        return [found[i] for i in ids if i in found and found[i].tenant_id == tenant_id]

    async def account_transfers(
        self,
        *,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        limit: int,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page[Transfer]:
        """An account's transfers in time order, a page at a time."""
        await self.get_account(tenant_id=tenant_id, account_id=account_id)
        after = _timestamp_cursor(cursor)
        async with self.repository.read() as reader:
            transfers = await reader.account_transfers(
                account_id=account_id, after_timestamp=after, limit=limit, descending=descending
            )
        next_cursor = encode_cursor([transfers[-1].timestamp]) if len(transfers) == limit else None
        return Page(items=transfers, next_cursor=next_cursor)

    async def balance_as_of(
        self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, timestamp: int
    ) -> BalanceRecord | None:
        """The account's balances right after its last transfer at or before `timestamp`
        (None if it had none); needs the `history` flag."""
        await self._history_account(tenant_id, account_id)
        async with self.repository.read() as reader:
            records = await reader.balance_history(
                account_id=account_id, as_of_timestamp=timestamp, after_timestamp=None, limit=1
            )
        return records[0] if records else None

    async def balance_history(
        self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, limit: int, cursor: str | None = None
    ) -> Page[BalanceRecord]:
        """The account's balances after each of its transfers, oldest first."""
        await self._history_account(tenant_id, account_id)
        async with self.repository.read() as reader:
            records = await reader.balance_history(
                account_id=account_id,
                as_of_timestamp=None,
                after_timestamp=_timestamp_cursor(cursor),
                limit=limit,
            )
        next_cursor = encode_cursor([records[-1].timestamp]) if len(records) == limit else None
        return Page(items=records, next_cursor=next_cursor)

    async def _history_account(self, tenant_id: uuid.UUID, account_id: uuid.UUID) -> Account:
        account = await self.get_account(tenant_id=tenant_id, account_id=account_id)
        if not account.flags & AccountFlags.HISTORY:
            raise AccountNotFound(f"account {account_id} does not keep balance history")
        return account

    async def verify(self, *, grace_s: int) -> VerifyReport:
        async with self.repository.read() as reader:
            return await verify_ledger(reader, now_ns=self.clock.now_ns(), grace_s=grace_s)


class _Applier:
    """The writer's two steps over this ledger's repository and account cache."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.decided_ahead = 0
        """Batches written as decided while the previous one was being written."""
        self.decided_again = 0
        """Batches decided ahead whose basis had changed, so decided again under the lock."""

    async def prepare(self, segments: Segments) -> service.DecidedBatch | None:
        ledger = self._ledger
        try:
            async with ledger.repository.read() as reader:
                return await service.prepare_transfers(
                    reader, segments, clock=ledger.clock, cache=ledger.account_cache
                )
        except BaseException:
            ledger.account_cache.invalidate()  # a decision may have stopped half way
            raise

    async def commit(
        self, segments: Segments, prepared: service.DecidedBatch | None
    ) -> list[list[TransferResult]]:
        ledger = self._ledger
        try:
            async with ledger.repository.write() as transaction:
                decided = await service.commit_transfers(
                    transaction,
                    segments,
                    decided=prepared,
                    clock=ledger.clock,
                    cache=ledger.account_cache,
                )
        except BaseException:
            ledger.account_cache.invalidate()  # it may hold balances that were not written
            raise
        if prepared is not None:
            if decided is prepared:
                self.decided_ahead += 1
            else:
                self.decided_again += 1
        return decided.results


def _timestamp_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    values = decode_cursor(cursor)
    if len(values) != 1 or not isinstance(values[0], int):
        raise InvalidCursor("not a cursor for this list")
    return values[0]

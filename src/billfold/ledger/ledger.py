"""`Ledger`: the one object the rest of Billfold holds to use the ledger.

It owns the repository (PostgreSQL or SQLite), the clock and the batching writer, and scopes
every read to a tenant: an id that belongs to another tenant is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Sequence

import structlog

from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock, SystemClock
from billfold.kit.db import parse_database_url
from billfold.kit.errors import InvariantViolation, invariant
from billfold.kit.ids import format_id
from billfold.kit.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from billfold.kit.settings import Settings
from billfold.ledger import service
from billfold.ledger.cache import AccountCache
from billfold.ledger.errors import AccountNotFound, HistoryNotKept, TransferNotFound
from billfold.ledger.repository import LedgerRepository
from billfold.ledger.repository_postgres import PostgresLedgerRepository
from billfold.ledger.repository_sqlite import SqliteLedgerRepository
from billfold.ledger.types import (
    ACCOUNT_ID_PREFIX,
    BATCH_SIZE_MAX,
    TRANSFER_ID_PREFIX,
    Account,
    AccountFlags,
    AccountResult,
    AccountStatus,
    BalanceRecord,
    CreateAccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    Transfer,
    TransferFlags,
    TransferResult,
)
from billfold.ledger.verify import VerifyReport, verify_ledger
from billfold.ledger.writer import BatchingWriter, Segments

__all__ = ["Ledger", "recorded_transfer", "repository_for"]

log = structlog.get_logger(__name__)

TIMESTAMP_BOUND = 2**63 - 1
"""Above every ledger timestamp, and the largest a BIGINT holds: an exclusive upper bound."""
_POST_OR_VOID = TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING


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

    async def create_account(self, account: NewAccount) -> tuple[AccountResult, Account | None]:
        """Open one account: its result and, when it is `ok` or `exists`, the account."""
        [result] = await self.create_accounts([account])
        if result.status not in (CreateAccountStatus.OK, CreateAccountStatus.EXISTS):
            return result, None
        return result, await self.get_account(tenant_id=account.tenant_id, account_id=account.id)

    async def create_transfer(
        self, transfer: NewTransfer
    ) -> tuple[TransferResult, Transfer | None]:
        """One transfer through the batching writer: its result and, when it is `ok` or
        `exists`, the transfer as recorded."""
        [result] = await self.submit([transfer])
        if result.status is CreateTransferStatus.OK and not transfer.flags & _POST_OR_VOID:
            # Everything recorded is in the request and the result: no read needed.
            return result, recorded_transfer(transfer, result)
        if result.status not in (CreateTransferStatus.OK, CreateTransferStatus.EXISTS):
            return result, None
        return result, await self.get_transfer(
            tenant_id=transfer.tenant_id, transfer_id=transfer.id
        )

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
            raise AccountNotFound(f"No account {format_id(ACCOUNT_ID_PREFIX, account_id)}.")
        return accounts[0]

    async def lookup_transfers(
        self, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> list[Transfer]:
        invariant(len(ids) <= BATCH_SIZE_MAX, "lookups are bounded")
        async with self.repository.read() as reader:
            found = {t.id: t for t in await reader.transfers_by_id(set(ids))}
        return [found[i] for i in ids if i in found and found[i].tenant_id == tenant_id]

    async def get_transfer(self, *, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> Transfer:
        transfers = await self.lookup_transfers(tenant_id=tenant_id, ids=[transfer_id])
        if not transfers:
            raise TransferNotFound(f"No transfer {format_id(TRANSFER_ID_PREFIX, transfer_id)}.")
        return transfers[0]

    async def list_accounts(
        self, *, tenant_id: uuid.UUID, limit: int, cursor: str | None = None
    ) -> Page[Account]:
        """The tenant's accounts in the order they were opened, a page at a time."""
        invariant(1 <= limit <= BATCH_SIZE_MAX, "pages are bounded")
        scope = _cursor_scope("accounts", tenant_id)
        after = _timestamp_cursor(cursor, scope)
        async with self.repository.read() as reader:
            accounts = await reader.tenant_accounts(
                tenant_id=tenant_id, after_timestamp=-1 if after is None else after, limit=limit
            )
        full = len(accounts) == limit
        next_cursor = _encode_position(scope, accounts[-1].timestamp) if full else None
        return Page(items=accounts, next_cursor=next_cursor)

    async def account_transfers(
        self,
        *,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        limit: int,
        cursor: str | None = None,
        descending: bool = False,
        since_timestamp: int | None = None,
        until_timestamp: int | None = None,
        code: int | None = None,
    ) -> Page[Transfer]:
        """An account's transfers in time order, a page at a time; optionally only those
        timestamped from `since_timestamp` to `until_timestamp` (inclusive) or of one `code`.

        With `code`, a page holds the matching transfers among the account's next `limit`,
        so it may hold fewer (even none) while `next_cursor` says more may follow: the work
        per page stays bounded however rare the code is. A cursor is good only for the
        account, order and filters that gave it (any `limit`)."""
        invariant(1 <= limit <= BATCH_SIZE_MAX, "pages are bounded")
        await self.get_account(tenant_id=tenant_id, account_id=account_id)
        scope = _cursor_scope(
            "account_transfers",
            tenant_id,
            account_id,
            "desc" if descending else "asc",
            since_timestamp,
            until_timestamp,
            code,
        )
        after, before = _transfer_bounds(
            position=_timestamp_cursor(cursor, scope),
            since=since_timestamp,
            until=until_timestamp,
            descending=descending,
        )
        async with self.repository.read() as reader:
            scanned = await reader.account_transfers(
                account_id=account_id,
                after_timestamp=after,
                before_timestamp=before,
                limit=limit,
                descending=descending,
            )
        full = len(scanned) == limit
        next_cursor = _encode_position(scope, scanned[-1].timestamp) if full else None
        items = scanned if code is None else [t for t in scanned if t.code == code]
        return Page(items=items, next_cursor=next_cursor)

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
        scope = _cursor_scope("balance_history", tenant_id, account_id)
        async with self.repository.read() as reader:
            records = await reader.balance_history(
                account_id=account_id,
                as_of_timestamp=None,
                after_timestamp=_timestamp_cursor(cursor, scope),
                limit=limit,
            )
        full = len(records) == limit
        next_cursor = _encode_position(scope, records[-1].timestamp) if full else None
        return Page(items=records, next_cursor=next_cursor)

    async def _history_account(self, tenant_id: uuid.UUID, account_id: uuid.UUID) -> Account:
        account = await self.get_account(tenant_id=tenant_id, account_id=account_id)
        if not account.flags & AccountFlags.HISTORY:
            raise HistoryNotKept(
                f"Account {format_id(ACCOUNT_ID_PREFIX, account_id)} keeps no balance history"
                " (it was opened without the `history` flag)."
            )
        return account

    async def last_timestamp(self) -> int:
        """The last timestamp the ledger's clock gave (to a transfer or an account): no
        committed transfer has a larger one, so a tail at or past it has nothing to read."""
        async with self.repository.read() as reader:
            return await reader.last_timestamp()

    async def transfers_after(self, *, after_timestamp: int, limit: int) -> list[Transfer]:
        """Every tenant's transfers after `after_timestamp`, oldest first, `limit` at most:
        the ledger's outbox, for the events worker (not for tenants: it is not scoped).
        A transfer committed later always has a larger timestamp, so a tail that resumes
        after the last timestamp it saw misses none."""
        invariant(1 <= limit <= BATCH_SIZE_MAX, "pages are bounded")
        async with self.repository.read() as reader:
            return await reader.transfers_after(after_timestamp=after_timestamp, limit=limit)

    async def verify(self, *, grace_s: int) -> VerifyReport:
        async with self.repository.read() as reader:
            return await verify_ledger(reader, now_ns=self.clock.now_ns(), grace_s=grace_s)


def recorded_transfer(new: NewTransfer, result: TransferResult) -> Transfer:
    """The transfer the state machine recorded for `new`, a regular (neither post nor void)
    transfer whose result is `ok`, rebuilt from the request and the result alone."""
    invariant(result.status is CreateTransferStatus.OK, "only an ok transfer was recorded")
    invariant(not new.flags & _POST_OR_VOID, "a post or void takes fields from its pending")
    timestamp, amount = result.timestamp, result.amount
    if (
        timestamp is None
        or amount is None
        or new.debit_account_id is None
        or new.credit_account_id is None
        or new.ledger is None
    ):
        raise InvariantViolation("an ok transfer had both accounts, a ledger and an amount")
    timed = bool(new.flags & TransferFlags.PENDING and new.timeout_s)
    return Transfer(
        id=new.id,
        tenant_id=new.tenant_id,
        debit_account_id=new.debit_account_id,
        credit_account_id=new.credit_account_id,
        amount=amount,
        ledger=new.ledger,
        code=new.code or 0,
        flags=new.flags,
        pending_id=None,
        timeout_s=new.timeout_s,
        user_data=new.user_data,
        timestamp=timestamp,
        expires_at=timestamp + new.timeout_s * NANOSECONDS_PER_SECOND if timed else None,
    )


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


def _transfer_bounds(
    *, position: int | None, since: int | None, until: int | None, descending: bool
) -> tuple[int, int]:
    """The exclusive timestamp bounds of a page: the filters, narrowed by the cursor."""
    after = -1 if since is None else since - 1
    before = TIMESTAMP_BOUND if until is None else min(until + 1, TIMESTAMP_BOUND)
    if position is not None and descending:
        before = min(before, position)
    elif position is not None:
        after = max(after, position)
    return after, before


def _cursor_scope(*parts: object) -> str:
    """What a cursor is good for: the list (its kind, tenant, account) and its filters and
    order, as an opaque digest. A bare position served any list that took a cursor: an
    ascending page's cursor sent with `order=desc` repeated what was seen, and one list's
    cursor on another skipped or ended it, all with a 200."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _encode_position(scope: str, timestamp: int) -> str:
    return encode_cursor([scope, timestamp])


def _timestamp_cursor(cursor: str | None, scope: str) -> int | None:
    """The position a cursor of the list `scope` names, or 400 `invalid_cursor`."""
    if cursor is None:
        return None
    values = decode_cursor(cursor)
    if len(values) != 2 or values[0] != scope:
        raise InvalidCursor(
            "The cursor belongs to another list or to other parameters: send each"
            " next_cursor with the same path, order and filters (any limit)."
        )
    position = values[1]
    # Cursors are not signed: a forged one holding a number no BIGINT holds reached the
    # database, which refused it (a 500) instead of the cursor being refused (a 400).
    if not isinstance(position, int) or not 0 <= position <= TIMESTAMP_BOUND:
        raise InvalidCursor("not a cursor for this list")
    return position

"""Every query the ledger makes, behind two small protocols with one implementation per backend.

`LedgerRepository.write()` is the ledger's unit of work: it opens a database transaction,
yields a `LedgerWriteTransaction`, commits when the block ends and rolls back on error. The
service runs inside it and never commits. `LedgerRepository.read()` yields a
`LedgerReader` on a consistent snapshot; the read type has no write methods, so mypy refuses
a write through a read.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from billfold.ledger.state_machine import PendingRow
from billfold.ledger.types import (
    Account,
    AccountStatus,
    BalanceRecord,
    Balances,
    PendingStatus,
    Transfer,
)

__all__ = [
    "ACCOUNT_COLUMNS",
    "TRANSFER_COLUMNS",
    "LedgerReader",
    "LedgerRepository",
    "LedgerWriteTransaction",
]

ACCOUNT_COLUMNS = (
    "id",
    "tenant_id",
    "ledger",
    "code",
    "flags",
    "owner_ref",
    "user_data",
    "status",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "timestamp",
)
TRANSFER_COLUMNS = (
    "id",
    "tenant_id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "ledger",
    "code",
    "flags",
    "pending_id",
    "timeout_s",
    "user_data",
    "timestamp",
    "expires_at",
)
BALANCE_COLUMNS = (
    "account_id",
    "transfer_id",
    "timestamp",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
)


class LedgerReader(Protocol):
    """Reads over one consistent snapshot."""

    async def accounts_by_id(self, ids: Collection[uuid.UUID]) -> list[Account]: ...

    async def transfers_by_id(self, ids: Collection[uuid.UUID]) -> list[Transfer]: ...

    async def pending_statuses(
        self, ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, PendingStatus]: ...

    async def account_transfers(
        self,
        *,
        account_id: uuid.UUID,
        after_timestamp: int,
        before_timestamp: int,
        limit: int,
        descending: bool,
    ) -> list[Transfer]:
        """Up to `limit` transfers debiting or crediting the account with a timestamp
        strictly between the two bounds, oldest first (newest first if `descending`)."""
        ...

    async def tenant_accounts(
        self, *, tenant_id: uuid.UUID, after_timestamp: int, limit: int
    ) -> list[Account]:
        """Up to `limit` of the tenant's accounts created after `after_timestamp`, oldest
        first."""
        ...

    async def balance_history(
        self,
        *,
        account_id: uuid.UUID,
        as_of_timestamp: int | None,
        after_timestamp: int | None,
        limit: int,
    ) -> list[BalanceRecord]: ...

    async def last_timestamp(self) -> int: ...

    async def transfers_after(self, *, after_timestamp: int, limit: int) -> list[Transfer]:
        """Up to `limit` transfers of every tenant timestamped after `after_timestamp`,
        oldest first. Timestamps are assigned under the clock lock and increase in commit
        order, so a reader that keeps the last timestamp it saw misses nothing: the
        transfers table is the ledger's outbox (the events worker tails it)."""
        ...

    def all_accounts(self, *, chunk_size: int) -> AsyncIterator[list[Account]]: ...

    def all_transfers(self, *, chunk_size: int) -> AsyncIterator[list[Transfer]]: ...

    def open_pending(self, *, chunk_size: int) -> AsyncIterator[list[PendingRow]]: ...


class LedgerWriteTransaction(LedgerReader, Protocol):
    """Reads and writes inside one database transaction that the repository commits."""

    async def lock_clock(self) -> int:
        """Take the ledger's write lock (the clock row) and return the last timestamp."""
        ...

    async def save_clock(self, last_timestamp: int) -> None: ...

    async def lock_accounts(self, ids: Collection[uuid.UUID]) -> list[Account]:
        """Load and lock accounts, always in id order so concurrent writers cannot deadlock."""
        ...

    async def insert_accounts(self, accounts: Sequence[Account]) -> None: ...

    async def update_balances(self, balances: Sequence[Balances]) -> None: ...

    async def update_status(self, account_id: uuid.UUID, status: AccountStatus) -> None: ...

    async def insert_transfers(self, transfers: Sequence[Transfer]) -> None: ...

    async def insert_pending(self, rows: Collection[PendingRow]) -> None: ...

    async def update_pending(self, statuses: Mapping[uuid.UUID, PendingStatus]) -> None: ...

    async def insert_history(self, records: Sequence[BalanceRecord]) -> None: ...

    async def due_pending(self, *, now_ns: int, limit: int) -> list[Transfer]:
        """Open pending transfers whose timeout has passed, oldest expiry first."""
        ...


class LedgerRepository(Protocol):
    """A ledger database: PostgreSQL or SQLite."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer."""
        ...

    def write(self) -> AbstractAsyncContextManager[LedgerWriteTransaction]: ...

    def read(self) -> AbstractAsyncContextManager[LedgerReader]: ...

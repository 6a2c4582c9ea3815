"""The ledger's decisions, run inside a write transaction the caller owns (never commits).

Each function follows the same steps: take the clock lock (serializing ledger writers, like
TigerBeetle's single-threaded state machine), load what the batch touches, let the pure state
machine decide, write the effects, advance the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from billfold.kit.clock import Clock
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id
from billfold.ledger.cache import AccountCache
from billfold.ledger.errors import (
    AccountClosed,
    AccountHasPendingBalance,
    AccountNotFound,
    BatchTooLarge,
)
from billfold.ledger.repository import LedgerReader, LedgerWriteTransaction
from billfold.ledger.state_machine import (
    Effects,
    Snapshot,
    apply_accounts,
    apply_expiries,
    apply_transfers,
    expiry_id,
)
from billfold.ledger.types import (
    ACCOUNT_ID_PREFIX,
    BATCH_SIZE_MAX,
    AccountResult,
    AccountStatus,
    NewAccount,
    NewTransfer,
    Transfer,
    TransferResult,
)

__all__ = [
    "DecidedBatch",
    "commit_transfers",
    "create_accounts",
    "expire_pending_transfers",
    "prepare_transfers",
    "set_account_status",
]


def _check_size(count: int) -> None:
    if count > BATCH_SIZE_MAX:
        raise BatchTooLarge(f"at most {BATCH_SIZE_MAX} items per batch, got {count}")


async def create_accounts(
    transaction: LedgerWriteTransaction, accounts: Sequence[NewAccount], *, clock: Clock
) -> list[AccountResult]:
    """Open accounts in order; an id already used returns `exists` or a difference."""
    _check_size(len(accounts))
    last_timestamp = await transaction.lock_clock()
    now_ns = clock.now_ns()
    existing = await transaction.lock_accounts({account.id for account in accounts})
    snapshot = Snapshot(last_timestamp, {account.id: account for account in existing}, {}, {})
    results, created, last_timestamp = apply_accounts(snapshot, accounts, now_ns=now_ns)
    if created:
        await transaction.insert_accounts(created)
        await transaction.save_clock(last_timestamp)
    return results


@dataclass(frozen=True, slots=True)
class DecidedBatch:
    """A batch the state machine has decided, ready to write: each request's results, the
    effects (frozen for writing), and the state it read and left, for the cache."""

    results: list[list[TransferResult]]
    effects: Effects
    snapshot: Snapshot
    base_timestamp: int
    """The clock value the decision assumed; writing it requires finding exactly that."""
    epoch: int
    """The cache epoch it was built in; a different epoch means its basis was voided."""

    @property
    def last_timestamp(self) -> int:
        return self.effects.last_timestamp if self.effects.transfers else self.base_timestamp


def _flatten(segments: Sequence[Sequence[NewTransfer]]) -> list[NewTransfer]:
    transfers = [t for segment in segments for t in segment]
    _check_size(len(transfers))
    return transfers


def _decide(
    snapshot: Snapshot,
    segments: Sequence[Sequence[NewTransfer]],
    *,
    now_ns: int,
    cache: AccountCache,
    epoch: int,
) -> DecidedBatch:
    results, effects = apply_transfers(snapshot, segments, now_ns=now_ns)
    decided = DecidedBatch(results, effects, snapshot, snapshot.last_timestamp, epoch)
    cache.advance(
        through=decided.last_timestamp,
        accounts=snapshot.accounts,
        transfers=snapshot.transfers,
        pending_status=snapshot.pending_status,
    )
    return decided


async def prepare_transfers(
    reader: LedgerReader,
    segments: Sequence[Sequence[NewTransfer]],
    *,
    clock: Clock,
    cache: AccountCache,
) -> DecidedBatch | None:
    """Decide a batch before taking the lock, on top of the batch being written (read from
    the cache). None when there is nothing to build on or the cache changed meanwhile."""
    base, epoch = cache.through, cache.epoch
    if base is None:
        return None
    transfers = _flatten(segments)
    pending_ids = {t.pending_id for t in transfers if t.pending_id is not None}
    lookup_ids = {t.id for t in transfers} | pending_ids
    known = {t.id: t for t in await reader.transfers_by_id(lookup_ids)}
    statuses = await reader.pending_statuses(pending_ids) if pending_ids else {}
    if cache.epoch != epoch or cache.through != base:
        return None
    # The in-flight batch's transfers and pending states may not be committed yet.
    known.update((i, cache.transfers[i]) for i in lookup_ids if i in cache.transfers)
    statuses.update((i, cache.pending_status[i]) for i in pending_ids if i in cache.pending_status)
    account_ids = _account_ids(transfers, pending_ids, known)
    accounts = {i: cache.accounts[i] for i in account_ids if i in cache.accounts}
    missing = account_ids - accounts.keys()
    if missing:
        loaded = await reader.accounts_by_id(missing)
        if cache.epoch != epoch or cache.through != base:
            return None
        accounts.update((a.id, a) for a in loaded)
    snapshot = Snapshot(base, accounts, known, statuses)
    return _decide(snapshot, segments, now_ns=clock.now_ns(), cache=cache, epoch=epoch)


async def commit_transfers(
    transaction: LedgerWriteTransaction,
    segments: Sequence[Sequence[NewTransfer]],
    *,
    decided: DecidedBatch | None,
    clock: Clock,
    cache: AccountCache,
) -> DecidedBatch:
    """Write a batch under the lock: the prepared decision if its basis still holds (same
    epoch, clock exactly where it assumed), else decide it again from the database."""
    clock_value = await transaction.lock_clock()
    if decided is None or decided.epoch != cache.epoch or decided.base_timestamp != clock_value:
        if decided is not None:
            cache.invalidate()
        snapshot = await _load(transaction, _flatten(segments), cache, clock_value)
        # Read the time only once the lock is held: a writer that waited for it must not
        # stamp transfers with the moment it started waiting.
        decided = _decide(snapshot, segments, now_ns=clock.now_ns(), cache=cache, epoch=cache.epoch)
    await _write(transaction, decided.effects)
    return decided


async def expire_pending_transfers(
    transaction: LedgerWriteTransaction, *, clock: Clock, limit: int
) -> list[Transfer]:
    """Void pending transfers whose timeout has passed, recording each expiry as a transfer."""
    last_timestamp = await transaction.lock_clock()
    now_ns = clock.now_ns()
    due = await transaction.due_pending(now_ns=now_ns, limit=min(limit, BATCH_SIZE_MAX))
    if not due:
        return []
    account_ids = {t.debit_account_id for t in due} | {t.credit_account_id for t in due}
    accounts = await transaction.lock_accounts(account_ids)
    statuses = await transaction.pending_statuses([t.id for t in due])
    # Anyone can derive an expiry's id, so a client may already have used it for a transfer
    # of its own; recording the expiry under it failed the whole sweep, every tenant's
    # expiries with it, at every interval. Such an expiry takes a fresh id instead (the
    # pending transfer's status, not the id, makes it happen once).
    derived = {t.id: expiry_id(t.id) for t in due}
    taken = {t.id for t in await transaction.transfers_by_id(set(derived.values()))}
    ids = {pending: new_id() if i in taken else i for pending, i in derived.items()}
    snapshot = Snapshot(
        last_timestamp, {a.id: a for a in accounts}, {t.id: t for t in due}, statuses
    )
    expired, effects = apply_expiries(snapshot, due, now_ns=now_ns, ids=ids)
    await _write(transaction, effects)
    return expired


async def set_account_status(
    transaction: LedgerWriteTransaction,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    status: AccountStatus,
) -> None:
    """Freeze, unfreeze or close an account. Closing needs no pending balance left, and is
    for good: a closed account's status never changes again (closing it again is a no-op).
    Checked here, under the account's lock, not by callers: a freeze decided on an account
    read as active, then applied after a close, reopened it (and its unfreeze made it
    active)."""
    last_timestamp = await transaction.lock_clock()
    accounts = await transaction.lock_accounts([account_id])
    if not accounts or accounts[0].tenant_id != tenant_id:
        raise AccountNotFound(f"No account {format_id(ACCOUNT_ID_PREFIX, account_id)}.")
    account = accounts[0]
    if account.status is AccountStatus.CLOSED:
        if status is AccountStatus.CLOSED:
            return
        raise AccountClosed(
            f"Account {format_id(ACCOUNT_ID_PREFIX, account_id)} is closed, for good:"
            f" it cannot become {status.value}."
        )
    if status is AccountStatus.CLOSED and (account.debits_pending or account.credits_pending):
        raise AccountHasPendingBalance("void or post its pending transfers before closing it")
    await transaction.update_status(account_id, status)
    # Every write advances the clock, so other processes' account caches see it.
    await transaction.save_clock(last_timestamp + 1)


def _account_ids(
    transfers: Sequence[NewTransfer],
    pending_ids: set[uuid.UUID],
    known: dict[uuid.UUID, Transfer],
) -> set[uuid.UUID]:
    """Every account the batch may touch, including those of the pending transfers."""
    account_ids: set[uuid.UUID] = set()
    for transfer in transfers:
        if transfer.debit_account_id is not None:
            account_ids.add(transfer.debit_account_id)
        if transfer.credit_account_id is not None:
            account_ids.add(transfer.credit_account_id)
    for pending_id in pending_ids:
        pending = known.get(pending_id)
        if pending is not None:
            account_ids.add(pending.debit_account_id)
            account_ids.add(pending.credit_account_id)
    return account_ids


async def _load(
    transaction: LedgerWriteTransaction,
    transfers: Sequence[NewTransfer],
    cache: AccountCache,
    clock_value: int,
) -> Snapshot:
    """Everything a batch may read, under the lock: existing transfers under its ids and
    pending ids, the pending statuses, then the accounts: from the cache when no other
    write happened since this process's last batch, the rest read and locked in id order."""
    cached = cache.begin(clock_value)
    pending_ids = {t.pending_id for t in transfers if t.pending_id is not None}
    lookup_ids = {t.id for t in transfers} | pending_ids
    known = {t.id: t for t in await transaction.transfers_by_id(lookup_ids)}
    statuses = await transaction.pending_statuses(pending_ids) if pending_ids else {}
    account_ids = _account_ids(transfers, pending_ids, known)
    accounts = {i: cached[i] for i in account_ids if i in cached}
    missing = account_ids - accounts.keys()
    if missing:
        accounts.update((a.id, a) for a in await transaction.lock_accounts(missing))
    return Snapshot(clock_value, accounts, known, statuses)


async def _write(transaction: LedgerWriteTransaction, effects: Effects) -> None:
    if not effects.transfers:
        return
    invariant(all(t.amount >= 0 for t in effects.transfers), "amounts are never negative")
    await transaction.insert_transfers(effects.transfers)
    await transaction.update_balances(effects.balances)
    if effects.pending_inserts:
        await transaction.insert_pending(list(effects.pending_inserts.values()))
    if effects.pending_updates:
        await transaction.update_pending(effects.pending_updates)
    if effects.history:
        await transaction.insert_history(effects.history)
    await transaction.save_clock(effects.last_timestamp)

"""What the ledger looked like after the last batch this process decided.

Every ledger write, in any process, takes the clock row lock and advances the clock. A
batch that takes the lock and finds the clock exactly at the value this cache was built
for knows that no other write happened in between, so the balances held here are the
database's and need not be read again.

The cache also carries the in-flight batch's transfers and pending states, so the next
batch can be decided while that one is still being written (pipelining). Such a decision
is speculative: it records the cache's `epoch`, and any failure or foreign write bumps the
epoch, which sends every decision built on the old state back to be redone under the lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from billfold.ledger.types import Account, PendingStatus, Transfer

__all__ = ["AccountCache"]


class AccountCache:
    def __init__(self, *, size_max: int) -> None:
        self.accounts: dict[uuid.UUID, Account] = {}
        self.transfers: Mapping[uuid.UUID, Transfer] = {}
        """The latest decided batch's transfers: what it read and what it created."""
        self.pending_status: Mapping[uuid.UUID, PendingStatus] = {}
        """The latest decided batch's view of the pending transfers it read or changed."""
        self.through: int | None = None
        """The clock value the cached state corresponds to, once written."""
        self.epoch = 0
        self._size_max = size_max

    def begin(self, clock: int) -> dict[uuid.UUID, Account]:
        """Under the lock: the cached accounts if the clock is where they were left."""
        if self.through != clock:
            self.invalidate()
        return self.accounts

    def advance(
        self,
        *,
        through: int,
        accounts: Mapping[uuid.UUID, Account],
        transfers: Mapping[uuid.UUID, Transfer],
        pending_status: Mapping[uuid.UUID, PendingStatus],
    ) -> None:
        """A batch was decided: the cache now describes the ledger after it."""
        if len(self.accounts) > self._size_max:
            self.accounts.clear()
        self.accounts.update(accounts)
        self.transfers = transfers
        self.pending_status = pending_status
        self.through = through

    def invalidate(self) -> None:
        """Forget everything and void every speculative decision made so far."""
        self.accounts = {}
        self.transfers = {}
        self.pending_status = {}
        self.through = None
        self.epoch += 1

    def __len__(self) -> int:
        return len(self.accounts)

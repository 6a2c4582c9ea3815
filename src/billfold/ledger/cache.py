"""The accounts this process's last batch left behind, reused while nobody else has written.

Every ledger write, in any process, takes the clock row lock and advances the clock. So when
a batch takes the lock and finds the clock exactly where this process's last committed
batch left it, no other write has happened since, and the balances held here are the
database's: the batch skips reading (and decoding) those accounts. Any other value clears
the cache. It is filled only after a commit, and cleared when a batch fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from billfold.ledger.types import Account

__all__ = ["AccountCache"]


class AccountCache:
    def __init__(self, *, size_max: int) -> None:
        self._accounts: dict[uuid.UUID, Account] = {}
        self._valid_through: int | None = None
        self._size_max = size_max

    def begin(self, last_timestamp: int) -> dict[uuid.UUID, Account]:
        """The cached accounts if the clock shows no other write since ours, else nothing.

        Until `committed` is called the cache counts as stale, so a batch that starts in
        between cannot trust objects this one is still changing.
        """
        if self._valid_through != last_timestamp:
            self._accounts.clear()
        self._valid_through = None
        return self._accounts

    def committed(self, last_timestamp: int, accounts: Iterable[Account]) -> None:
        """Keep the accounts a committed batch read or wrote, as of `last_timestamp`."""
        if len(self._accounts) > self._size_max:
            self._accounts.clear()
        for account in accounts:
            self._accounts[account.id] = account
        self._valid_through = last_timestamp

    def invalidate(self) -> None:
        self._accounts.clear()
        self._valid_through = None

    def __len__(self) -> int:
        return len(self._accounts)

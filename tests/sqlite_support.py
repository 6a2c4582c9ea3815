"""What SQLite tests share: another connection holding the database's one write lock (as
a long API transaction would), and whether an action finishes meanwhile."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

READ_WAIT_S = 5.0
"""Far below the 30 s busy timeout an action that took the write lock would wait out."""


@contextmanager
def write_lock_held(database_url: str) -> Iterator[sqlite3.Connection]:
    """Another connection holds the write lock until the block ends."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield connection
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def done_while_locked(
    database_url: str, action: Callable[[], object], *, wait_s: float = READ_WAIT_S
) -> bool:
    """Whether `action`, run in a thread while the write lock is held elsewhere, finishes
    within `wait_s` (if not, it is waited for once the lock is released)."""
    worker = threading.Thread(target=action)
    with write_lock_held(database_url):
        worker.start()
        worker.join(wait_s)
        done = not worker.is_alive()
    worker.join()
    return done

"""The cyclic garbage collector's tuning for long-running processes (`billfold serve`,
`billfold worker`).

Such a process imports a large heap at startup (the risk models' libraries, SQLAlchemy's
metadata, the routes) and then allocates many short-lived objects per request or event.
With Python's defaults a young collection runs every 700 allocations and a full one
traverses the whole startup heap again and again: 15% of a busy API's CPU, and 40% of a
loaded worker's in `bench/events.py` (under asyncpg's row decoding, which allocates a UUID
per column)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["tuned_garbage_collection"]


@contextmanager
def tuned_garbage_collection(gen0_threshold: int) -> Iterator[None]:
    """While the block runs: what exists on entry is frozen out of the collector's sight
    (`gc.freeze`), and young collections run every `gen0_threshold` allocations. Undone on
    exit (thresholds restored, the frozen objects handed back to the collector)."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(gen0_threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()

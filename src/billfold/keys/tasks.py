"""Background key work: re-wrapping every old data key of a (tenant, purpose) in bounded
batches, each in its own transaction, reporting progress after each batch. Safe to run
beside live traffic (rows are locked per batch, skipping ones another rewrap holds) and to
interrupt: what is done stays done, and running it again continues."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from billfold.keys.keyring import Keyring
from billfold.keys.service import KeyActor, RewrapProgress, record_rewrap, rewrap_batch
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.db import UnitOfWork

__all__ = ["REWRAP_BATCHES_MAX", "rewrap_all"]

REWRAP_BATCHES_MAX = 1_000_000
"""A bound on the loop: ten billion data keys at the largest batch size."""


async def rewrap_all(
    unit_of_work: UnitOfWork,
    keyring: Keyring,
    *,
    tenant_id: uuid.UUID,
    purpose: str,
    batch_size: int,
    actor: KeyActor,
    on_progress: Callable[[RewrapProgress], None] = lambda _: None,
    clock: Clock | None = None,
) -> int:
    """Re-wrap until nothing is left under an older version; returns how many were moved.
    One `key.rewrapped` security event records the whole run."""
    clock = clock or SystemClock()
    moved = 0
    progress: RewrapProgress | None = None
    for _ in range(REWRAP_BATCHES_MAX):
        async with unit_of_work.begin() as session:
            progress = await rewrap_batch(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose=purpose,
                batch_size=batch_size,
                now_ns=clock.now_ns(),
            )
        moved += progress.rewrapped
        on_progress(progress)
        if progress.remaining == 0 or progress.rewrapped == 0:
            break  # done, or what is left is locked by a concurrent rewrap
    if progress is not None and progress.active_version is not None and moved:
        async with unit_of_work.begin() as session:
            await record_rewrap(
                session,
                tenant_id=tenant_id,
                purpose=purpose,
                rewrapped=moved,
                active_version=progress.active_version,
                actor=actor,
                now_ns=clock.now_ns(),
            )
    return moved

"""The batching writer: concurrent callers share database transactions.

Callers `submit` their transfers and await their results. One task drains the queue: it
takes whole requests, in arrival order, until the batch would exceed `batch_size_max`, and
applies them in one database transaction. While a batch is being written, new requests
queue up and form the next batch, so the batch size adapts to the load; when the writer
was idle it waits `window_s` for company before writing. A hot account costs one row
update per batch instead of one per transfer, so it does not serialize the platform.

Batches are pipelined: while batch N is being written, batch N+1 is decided (`prepare`).
Commits stay strictly in order, one at a time, and a caller's future resolves only after
its batch has committed. A `solo` request (one caller's own transaction) is never merged.
A batch whose transaction fails is tried again one request at a time, so the failure is
the failing request's alone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from billfold.kit.errors import invariant
from billfold.ledger.errors import BatchTooLarge, LedgerBusy
from billfold.ledger.types import NewTransfer, TransferResult

__all__ = ["BatchApplier", "BatchingWriter", "Segments"]

Segments = Sequence[Sequence[NewTransfer]]
_Prepared = TypeVar("_Prepared")


class BatchApplier(Protocol[_Prepared]):
    """Applies requests (segments) in one transaction, in two steps."""

    async def prepare(self, segments: Segments) -> _Prepared | None:
        """Decide ahead of the transaction if possible (runs while the previous batch is
        still being written); None when it cannot."""
        ...

    async def commit(
        self, segments: Segments, prepared: _Prepared | None
    ) -> list[list[TransferResult]]:
        """Write the batch in its own transaction; each request's results."""
        ...


@dataclass(slots=True)
class _Request:
    transfers: Sequence[NewTransfer]
    future: asyncio.Future[list[TransferResult]]
    solo: bool


class BatchingWriter(Generic[_Prepared]):
    """Collects transfers from concurrent callers into shared database transactions."""

    def __init__(
        self,
        applier: BatchApplier[_Prepared],
        *,
        window_s: float,
        batch_size_max: int,
        queue_size_max: int,
    ) -> None:
        invariant(0 <= window_s <= 1, "window within bounds")
        invariant(1 <= batch_size_max <= 8190, "batch size within bounds")
        self._applier = applier
        self._window_s = window_s
        self._batch_size_max = batch_size_max
        self._queue_size_max = queue_size_max
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_transfers = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches_written = 0
        self.transfers_written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="billfold-ledger-writer")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(
        self, transfers: Sequence[NewTransfer], *, solo: bool = False
    ) -> list[TransferResult]:
        """Queue one request's transfers; resolves when its batch has committed. A `solo`
        request gets a database transaction of its own."""
        if len(transfers) > self._batch_size_max:
            raise BatchTooLarge(f"at most {self._batch_size_max} transfers per request")
        if self._closing or self._task is None:
            raise LedgerBusy("the ledger writer is not running")
        if self._queued_transfers + len(transfers) > self._queue_size_max:
            raise LedgerBusy(f"more than {self._queue_size_max} transfers are waiting")
        if not transfers:
            return []
        future: asyncio.Future[list[TransferResult]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(transfers, future, solo))
        self._queued_transfers += len(transfers)
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                if not self._queue:
                    if writing is not None:  # nothing to prepare: let the write finish
                        await writing
                        writing = None
                        continue
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    if self._window_s and not self._closing:
                        await self._gather_for_window()
                    continue
                writing = await self._pipeline(self._take_batch(), writing)
        finally:
            if writing is not None:
                await writing

    async def _pipeline(
        self, batch: list[_Request], writing: asyncio.Task[None] | None
    ) -> asyncio.Task[None] | None:
        """Decide `batch` while the previous one is written, then start writing it."""
        segments = [request.transfers for request in batch]
        try:
            prepared = await self._applier.prepare(segments)
        except Exception:  # deciding ahead is an optimisation: redo it under the lock
            prepared = None
        if writing is not None:
            await writing  # commits stay in order, one at a time
        task = asyncio.create_task(self._write(batch, segments, prepared))
        if prepared is None:
            # Nothing was decided ahead, so the next batch has nothing to build on yet.
            await task
            return None
        return task

    async def _gather_for_window(self) -> None:
        """Idle writer, first request: give others `window_s` to join, unless it fills up."""
        deadline = asyncio.get_running_loop().time() + self._window_s
        while self._queued_transfers < self._batch_size_max:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        size = 0
        while self._queue and size + len(self._queue[0].transfers) <= self._batch_size_max:
            if batch and (batch[0].solo or self._queue[0].solo):
                break
            request = self._queue.popleft()
            size += len(request.transfers)
            batch.append(request)
        self._queued_transfers -= size
        invariant(bool(batch), "a request never exceeds the batch size")
        return batch

    def _retry_alone(self, batch: list[_Request]) -> None:
        """A failed transaction of several requests: each goes again, first in the queue
        and in a transaction of its own, so only the one the database refuses (a value it
        cannot store) fails, not every caller batched with it. Retrying is safe even if the
        failed commit did land: transfer ids make a second application `exists`."""
        waiting = [request for request in batch if not request.future.done()]
        self._queue.extendleft(
            _Request(request.transfers, request.future, solo=True) for request in reversed(waiting)
        )
        self._queued_transfers += sum(len(request.transfers) for request in waiting)
        self._wakeup.set()

    async def _write(
        self, batch: list[_Request], segments: Segments, prepared: _Prepared | None
    ) -> None:
        try:
            results = await self._applier.commit(segments, prepared)
        except Exception as error:
            if len(batch) > 1:
                self._retry_alone(batch)
                return
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        invariant(len(results) == len(batch), "one result list per request")
        self.batches_written += 1
        for request, request_results in zip(batch, results, strict=True):
            self.transfers_written += len(request_results)
            if not request.future.done():  # the caller may have been cancelled
                request.future.set_result(request_results)

"""Ledger steps of a payment: deterministic transfer ids and what a result means.

A step's transfer id is ``uuid5(payment id, step name)``: re-driving a step after a crash
or a retry submits the same id, which the ledger answers with ``exists`` — it never moves
money twice, and ``exists`` counts as done.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferResult

__all__ = ["APPLIED", "applied", "failure_of", "step_id", "submit"]

APPLIED = (CreateTransferStatus.OK, CreateTransferStatus.EXISTS)


def step_id(owner_id: uuid.UUID, step: str) -> uuid.UUID:
    """The ledger transfer id of `step` of the payment (or refund, dispute) `owner_id`."""
    return uuid.uuid5(owner_id, step)


def applied(results: Sequence[TransferResult]) -> bool:
    return all(result.status in APPLIED for result in results)


def failure_of(results: Sequence[TransferResult]) -> CreateTransferStatus | None:
    """The status that made a linked chain fail (not the `linked_event_failed` echoes)."""
    for result in results:
        if result.status not in (*APPLIED, CreateTransferStatus.LINKED_EVENT_FAILED):
            return result.status
    return None


async def submit(ledger: Ledger, transfers: Sequence[NewTransfer]) -> list[TransferResult]:
    """Apply the transfers (one linked chain, when linked) through the batching writer."""
    return await ledger.submit(transfers)

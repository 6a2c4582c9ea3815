"""Re-driving what a crash interrupted: P2P payments left `created` and refunds left
`pending` between their unit of work and the ledger. Each drive resubmits the same
deterministic transfer ids, so money the ledger already moved is answered `exists` and
moved only once. For a worker to call periodically (`resume_interrupted`)."""

from __future__ import annotations

import time

import structlog

from billfold.kit.errors import BillfoldError
from billfold.payments.flows.p2p import drive_p2p
from billfold.payments.flows.refunds import drive_refund
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime

__all__ = ["RESUME_BATCH_MAX", "resume_interrupted"]

RESUME_BATCH_MAX = 500
log = structlog.get_logger(__name__)


async def resume_interrupted(
    runtime: PaymentsRuntime, *, older_than_s: float, limit: int = RESUME_BATCH_MAX
) -> int:
    """Drive up to `limit` interrupted P2P payments and refunds older than `older_than_s`
    (younger ones may still be in flight in another request); how many were driven."""
    before_ns = time.time_ns() - int(older_than_s * 1_000_000_000)
    limit = min(limit, RESUME_BATCH_MAX)
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        payments = await repository.stuck_p2p(created_before_ns=before_ns, limit=limit)
        refunds = await repository.stuck_refunds(created_before_ns=before_ns, limit=limit)
    for payment_id in payments:
        try:
            await drive_p2p(runtime, payment_id)
        except BillfoldError as error:  # recorded on the payment; nothing to retry
            log.info("payments.resumed_failed", payment=payment_id.hex, code=error.code)
    for refund_id in refunds:
        try:
            await drive_refund(runtime, refund_id)
        except BillfoldError as error:
            log.info("payments.refund_resumed_failed", refund=refund_id.hex, code=error.code)
    return len(payments) + len(refunds)

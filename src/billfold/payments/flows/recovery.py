"""Re-driving what a crash interrupted, and expiring what is due. For a worker to call
periodically (`resume_interrupted`, the app's payments recovery loop).

- P2P payments left `created`, refunds left `pending`, disputes left `opening`, `winning`
  or `losing`, and merchant payments whose capture was claimed but not recorded, between
  their unit of work and the ledger: each drive resubmits the same deterministic transfer
  ids (a capture: with the fees priced when it was claimed), so money the ledger already
  moved is answered `exists` and moved only once.
- Top-ups and withdrawals left before the provider answered (`created`, or `processing`
  without a provider reference): the provider's status for the payment id (its
  idempotency key) resumes them, or their holds are voided and they fail (`interrupted`).
- Merchant payments whose authorization claimed the payer (limit checked) longer ago than
  the runtime's `claim_grace_s` but never finished (a crash, or a ledger call that raised,
  between the claim and the state change): authorized if the ledger holds their hold,
  else the claim is released (it no longer counts toward the payer's limits).
- Merchant payments past their expiry: unpaid ones expire; authorized ones past
  `authorization_expires_at` have their hold voided and expire.
- Movements held for risk review whose case is past `hold_expires_at`
  (`risk_review_hold_s`): their holds are voided, they fail (`risk_review_expired`) and
  the case is marked `expired` (`billfold.payments.flows.review.expire_held`); those
  still held whose case was decided (a crash between the decision and `resolve_held`)
  are finished as the case says (`resume_decided`).
"""

from __future__ import annotations

import time

import structlog

from billfold.kit.errors import BillfoldError
from billfold.payments.flows.disputes import drive_dispute
from billfold.payments.flows.merchant import drive_capture, expire, recover_claim
from billfold.payments.flows.p2p import drive_p2p
from billfold.payments.flows.refunds import drive_refund
from billfold.payments.flows.review import expire_held, resume_decided
from billfold.payments.flows.topups import resume_top_up
from billfold.payments.flows.withdrawals import resume_withdrawal
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime

__all__ = [
    "RESUME_BATCH_MAX",
    "expire_due",
    "recover_claims",
    "resume_interrupted",
    "resume_provider_flows",
]

RESUME_BATCH_MAX = 500
log = structlog.get_logger(__name__)


async def resume_interrupted(
    runtime: PaymentsRuntime, *, older_than_s: float, limit: int = RESUME_BATCH_MAX
) -> int:
    """Drive up to `limit` interrupted P2P payments, refunds, disputes and captures older
    than `older_than_s` (younger ones may still be in flight in another request), then the
    rest of the sweep; how many were looked at."""
    before_ns = time.time_ns() - int(older_than_s * 1_000_000_000)
    limit = min(limit, RESUME_BATCH_MAX)
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        payments = await repository.stuck_p2p(created_before_ns=before_ns, limit=limit)
        refunds = await repository.stuck_refunds(created_before_ns=before_ns, limit=limit)
        opening = await repository.stuck_disputes(created_before_ns=before_ns, limit=limit)
        captures = await repository.stuck_captures(claimed_before_ns=before_ns, limit=limit)
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
    for dispute_id in opening:
        try:
            await drive_dispute(runtime, dispute_id)
        except BillfoldError as error:
            log.info("payments.dispute_resumed_failed", dispute=dispute_id.hex, code=error.code)
    for payment_id in captures:  # before expiry: a capture claimed in time is finished
        try:
            outcome = await drive_capture(runtime, payment_id)
            log.info("payments.capture_resumed", payment=payment_id.hex, outcome=outcome)
        except BillfoldError as error:
            log.info("payments.capture_resumed_failed", payment=payment_id.hex, code=error.code)
    provider_flows = await resume_provider_flows(runtime, before_ns=before_ns, limit=limit)
    claims = await recover_claims(runtime, limit=limit)  # before expiry: holds decided first
    expired = await expire_due(runtime, limit=limit)
    reviews = await expire_held(runtime, limit=limit)
    reviews += await resume_decided(runtime, limit=limit)
    driven = len(payments) + len(refunds) + len(opening) + len(captures)
    return driven + provider_flows + claims + expired + reviews


async def recover_claims(runtime: PaymentsRuntime, *, limit: int = RESUME_BATCH_MAX) -> int:
    """Complete or release merchant authorizations whose claim is older than the runtime's
    `claim_grace_s` (a younger one may still be placing its hold); how many were looked at."""
    before_ns = time.time_ns() - int(runtime.claim_grace_s * 1_000_000_000)
    async with runtime.unit_of_work.begin() as session:
        stale = await PaymentRepository(session).stale_claims(
            claimed_before_ns=before_ns, limit=min(limit, RESUME_BATCH_MAX)
        )
    for payment_id in stale:
        try:
            outcome = await recover_claim(runtime, payment_id, claimed_before_ns=before_ns)
            log.info("payments.claim_recovered", payment=payment_id.hex, outcome=outcome)
        except BillfoldError as error:
            log.info("payments.claim_recovery_failed", payment=payment_id.hex, code=error.code)
    return len(stale)


async def resume_provider_flows(runtime: PaymentsRuntime, *, before_ns: int, limit: int) -> int:
    """Resume or fail top-ups and withdrawals created before `before_ns` that the
    provider never answered; how many were looked at."""
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        created_top_ups = await repository.stuck(
            kind="top_up", state="created", created_before_ns=before_ns, limit=limit
        )
        created_withdrawals = await repository.stuck(
            kind="withdrawal", state="created", created_before_ns=before_ns, limit=limit
        )
        unanswered = await repository.unanswered(created_before_ns=before_ns, limit=limit)
    kinds = dict.fromkeys(created_top_ups, "top_up")
    kinds |= dict.fromkeys(created_withdrawals, "withdrawal")
    kinds |= dict(unanswered)
    for payment_id, kind in kinds.items():
        try:
            if kind == "top_up":
                outcome = await resume_top_up(runtime, payment_id)
            else:
                outcome = await resume_withdrawal(runtime, payment_id)
            log.info("payments.provider_flow_resumed", payment=payment_id.hex, outcome=outcome)
        except BillfoldError as error:
            log.info("payments.provider_flow_failed", payment=payment_id.hex, code=error.code)
    return len(kinds)


async def expire_due(runtime: PaymentsRuntime, *, limit: int = RESUME_BATCH_MAX) -> int:
    """Expire merchant payments past their expiry (unpaid, or authorized and not captured
    in time: the hold is voided); how many were looked at."""
    now_ns = time.time_ns()
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        due = await repository.lapsed_authorizations(now_ns=now_ns, limit=limit)
        due += await repository.lapsed_unpaid(now_ns=now_ns, limit=limit)
    for payment_id in due:
        try:
            outcome = await expire(runtime, payment_id)
            log.info("payments.expired", payment=payment_id.hex, outcome=outcome)
        except BillfoldError as error:
            log.info("payments.expiry_failed", payment=payment_id.hex, code=error.code)
    return len(due)

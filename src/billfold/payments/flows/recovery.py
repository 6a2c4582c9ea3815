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
- Top-ups and withdrawals the provider answered without an outcome (`processing` with a
  provider reference, or a 3-D Secure `requires_action`) that have waited longer than the
  runtime's `reconcile_after_s` for their notification (it may be lost): the provider's
  status is asked, at most once per that age per payment, and a final answer is applied
  as its notification would be (`reconcile_outcome`). A top-up whose 3-D Secure challenge
  is still unanswered past the runtime's `action_timeout_s` is ended: its pending amount
  voided (its own step, `abandon`), failed `authentication_abandoned`; one a crash
  interrupted between that void and the failure is finished at its next reconciliation.
- Merchant payments whose authorization claimed the payer (limit checked) longer ago than
  the runtime's `claim_grace_s` but never finished (a crash, or a ledger call that raised,
  between the claim and the state change): authorized if the ledger holds their hold,
  else the claim is released (it no longer counts toward the payer's limits).
- Merchant payments past their expiry: unpaid ones expire; authorized ones past
  `authorization_expires_at` have their hold voided and expire.
- Movements held for risk review whose case is past `hold_expires_at`
  (`risk_review_hold_s`): the case is claimed `expired` first (its resolution and audit
  entry with it), then the hold is voided and the movement fails (`risk_review_expired`)
  (`billfold.payments.flows.review.expire_held`, the review queue's own expiry); those
  still held whose case was decided (a crash between the decision and `resolve_held`)
  are finished as the case says (`resume_decided`).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog

from billfold.connectors.types import ProviderStatus, ProviderTimeout
from billfold.kit.errors import BillfoldError
from billfold.kit.ids import format_id
from billfold.ledger.types import CreateTransferStatus
from billfold.payments.flows.common import load
from billfold.payments.flows.disputes import drive_dispute
from billfold.payments.flows.merchant import drive_capture, expire, recover_claim
from billfold.payments.flows.p2p import drive_p2p
from billfold.payments.flows.refunds import drive_refund
from billfold.payments.flows.review import expire_held, resume_decided
from billfold.payments.flows.topups import (
    AUTHENTICATION_ABANDONED,
    abandon_top_up,
    abandonment_voided,
    fail_top_up,
    resume_top_up,
    settle_top_up,
)
from billfold.payments.flows.withdrawals import finish_withdrawal, resume_withdrawal
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime

__all__ = [
    "RESUME_BATCH_MAX",
    "expire_due",
    "reconcile_outcome",
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
    provider never answered, then reconcile those it answered without an outcome that
    waited longer than `runtime.reconcile_after_s` for their notification
    (`reconcile_outcome`); how many were looked at."""
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
    waiting_since_ns = time.time_ns() - int(runtime.reconcile_after_s * 1_000_000_000)
    async with runtime.unit_of_work.begin() as session:
        waiting = await PaymentRepository(session).awaiting_outcome(
            waiting_since_ns=waiting_since_ns, limit=limit
        )
    waiting = [(payment_id, kind) for payment_id, kind in waiting if payment_id not in kinds]
    for payment_id, _ in waiting:  # not those just resumed: their answer is this round's
        try:
            outcome = await reconcile_outcome(
                runtime, payment_id, waiting_since_ns=waiting_since_ns
            )
            log.info("payments.provider_flow_reconciled", payment=payment_id.hex, outcome=outcome)
        except BillfoldError as error:
            log.info("payments.provider_flow_failed", payment=payment_id.hex, code=error.code)
    return len(kinds) + len(waiting)


async def reconcile_outcome(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, *, waiting_since_ns: int
) -> str:
    """Ask the provider's status about a top-up or withdrawal it answered without an
    outcome (`processing` with a provider reference, or a top-up's `requires_action`)
    that has waited since before `waiting_since_ns` for its notification: the notification
    may be lost (the provider gave up retrying, an outage, a misconfigured endpoint).

    The payment is first claimed (its `updated_at` set to now, if it is still in that
    state and unchanged since `waiting_since_ns`), so it is asked at most once per
    reconciliation age, whichever processes run recovery. A final answer (succeeded or
    failed) is applied with the functions its notification applies (`settle_top_up`,
    `fail_top_up`, `finish_withdrawal`): idempotent, so a late notification afterwards, or
    one applied at the same time, changes nothing and money moves once. Anything else
    changes nothing: still processing or requiring action; a status naming another
    provider reference than the one the payment recorded, or (where the provider says)
    another amount or currency (another charge's: logged, `payments.reconcile_mismatch`;
    settling it would credit money the provider never moved for this payment); a provider
    that no longer knows the reference it once answered (an anomaly, logged
    `payments.reconcile_unknown`: the provider took the payment, so it is not failed).

    Except a top-up whose payer never answered its 3-D Secure challenge: once it has
    waited in `requires_action` longer than the runtime's `action_timeout_s` (from when it
    entered that state) and the provider's status still says `requires_action`, it is
    failed with `AUTHENTICATION_ABANDONED` (`abandon_top_up`: the pending amount voided,
    the `failed` event emitted with the change). Otherwise nothing ever ended it: the provider
    never sends an outcome for a challenge nobody answers. The provider protocol has no
    call to cancel a charge, so the provider is only asked, never told; only its own word
    that the challenge is still open ends the top-up (not a status it could not give, nor
    a `processing` one: the payer answered, and the outcome is on its way). A success
    racing the ending is decided by the ledger, which posts or voids the pending amount
    once: whichever lands first wins, and the other changes nothing (see
    `notifications` for a success that arrives after). An abandonment whose void the
    ledger holds but whose failure a crash left unrecorded (still `requires_action`,
    `abandonment_voided`) is finished first, the provider not asked: its answer can no
    longer change it, and a late success found the amount gone and settled nothing.
    What happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        challenged_at = None
        if payment.kind == "top_up" and payment.state == "requires_action":
            repository = PaymentRepository(session)
            challenged_at = await repository.entered_at(payment_id, "requires_action")
    provider, reference = payment.provider, payment.provider_reference
    awaiting = (payment.state == "processing" and reference is not None) or (
        payment.state == "requires_action" and payment.kind == "top_up"
    )
    if payment.kind not in ("top_up", "withdrawal") or not awaiting or provider is None:
        return f"ignored_{payment.state}"
    async with runtime.unit_of_work.begin() as session:
        claimed = await PaymentRepository(session).claim_reconciliation(
            payment_id,
            state=payment.state,
            waiting_since_ns=waiting_since_ns,
            now_ns=time.time_ns(),
        )
    if not claimed:
        return "ignored_claimed"  # another round asked, or it moved on meanwhile
    if payment.state == "requires_action" and await abandonment_voided(runtime, payment):
        # Ended before, but the process died between the void and the failure: finished
        # now, whatever the provider says by now (the pending amount is released for good).
        outcome = await abandon_top_up(runtime, payment_id)
        log.info("payments.challenge_abandoned", payment=payment_id.hex, outcome=outcome)
        return f"abandoned_{outcome}"
    try:
        response = await asyncio.wait_for(
            runtime.provider(provider).status(format_id("pay", payment_id)),
            runtime.provider_timeout_s,
        )
    except (ProviderTimeout, TimeoutError):
        return "provider_unavailable"  # asked again once the age passed again
    if response is None:
        log.warning("payments.reconcile_unknown", payment=payment_id.hex, provider=provider)
        return "unknown_to_provider"
    if (
        reference is None
        or response.provider_reference != reference
        or response.amount_minor not in (None, payment.amount)
        or response.currency not in (None, payment.currency)
    ):
        log.warning(
            "payments.reconcile_mismatch",
            payment=payment_id.hex,
            provider=provider,
            provider_reference=response.provider_reference[:64],
        )
        return "ignored_mismatch"
    if response.status not in (ProviderStatus.SUCCEEDED, ProviderStatus.FAILED):
        if response.status is ProviderStatus.REQUIRES_ACTION and _abandoned(runtime, challenged_at):
            outcome = await abandon_top_up(runtime, payment_id)
            if outcome == _VOIDED_BEFORE:
                # Ended by an earlier release, which voided it with the provider failure's
                # step (`void`), and interrupted before the failure was recorded: finished
                # as that release finished it (its void answered `exists`).
                outcome = await fail_top_up(runtime, payment_id, reason=AUTHENTICATION_ABANDONED)
            log.info("payments.challenge_abandoned", payment=payment_id.hex, outcome=outcome)
            return f"abandoned_{outcome}"
        return f"still_{response.status.value}"
    succeeded = response.status is ProviderStatus.SUCCEEDED
    if payment.kind == "top_up" and succeeded:
        outcome = await settle_top_up(runtime, payment_id, reason="provider_status")
    elif payment.kind == "top_up":
        reason = response.failure_code or "charge_failed"
        outcome = await fail_top_up(runtime, payment_id, reason=reason)
    else:
        reason = "provider_status" if succeeded else response.failure_code or "payout_failed"
        outcome = await finish_withdrawal(runtime, payment_id, succeeded=succeeded, reason=reason)
    return f"{response.status.value}_{outcome}"


_VOIDED_BEFORE = f"ledger_{CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED.value}"
"""`abandon_top_up`'s outcome when the pending amount was voided already."""


def _abandoned(runtime: PaymentsRuntime, challenged_at: int | None) -> bool:
    """Whether a challenge entered at `challenged_at` (ns) has waited past the runtime's
    `action_timeout_s`."""
    if challenged_at is None:
        return False
    return time.time_ns() - challenged_at >= int(runtime.action_timeout_s * 1_000_000_000)


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

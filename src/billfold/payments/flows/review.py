"""Movements held for risk review: the analyst's decision and the hold's expiry.

``resolve_held(runtime, tenant_id=…, mode=…, reference=…, approve=…)`` is what the case
API calls once an analyst decided (it marks the case itself). `reference` is the held
movement's API id, as on the case: ``pay_…`` (a payment in ``in_review``), ``ref_…`` (a
refund in ``in_review``) or ``cnv_…`` (a conversion whose legs are pending).

- **approve**: the pending transfers are posted and the movement finishes exactly as the
  normal path would — P2P: posted with its fees, ``succeeded``; withdrawal:
  ``processing`` and the payout is asked for; merchant payment: ``authorized`` (and
  captured at once with automatic capture); top-up: its hold is placed and the provider
  charged (it was parked before anything moved); refund: posted with its fee return;
  conversion: both legs posted.
- **reject**: the pending transfers are voided; the payment (or refund) fails with
  ``failure_code`` ``risk_rejected``.

Idempotent and crash-safe: a movement no longer held is left alone, every transfer id
derives from the movement's id and its step (``steps.step_id``), and placing a hold again
is answered ``exists``. :func:`expire_held` (the payments recovery loop) expires the cases
past ``hold_expires_at`` through the review queue's own expiry (the case claimed first,
then its movement rejected ``risk_review_expired``); :func:`resume_decided` (the same
loop) finishes payments and refunds still held whose case was decided — a crash between
the case API's decision and ``resolve_held`` (or during it) — as the case says.
"""

from __future__ import annotations

import time
import uuid

import structlog

from billfold.fx import review as fx_review
from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError, ValidationFailed
from billfold.kit.ids import format_id, parse_id
from billfold.ledger.types import NewTransfer, TransferFlags
from billfold.payments.errors import PaymentNotFound, RefundNotFound
from billfold.payments.flows import gate
from billfold.payments.flows.common import (
    advance,
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
    release_holds,
)
from billfold.payments.flows.merchant import capture
from billfold.payments.flows.p2p import HELD_FEE_LINES_MAX, held_chain, held_fees, hold_p2p
from billfold.payments.flows.refunds import finish_held_refund
from billfold.payments.flows.topups import place_and_charge
from billfold.payments.flows.withdrawals import FEE_LINES_MAX, request_payout
from billfold.payments.models import Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import transition
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.cases.settlement import expire_due
from billfold.risk.reviews import case_state
from billfold.wallets.accounts import TransferCode
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "EXPIRE_BATCH_MAX",
    "PaymentsHeldResolver",
    "expire_held",
    "resolve_held",
    "resume_decided",
]

EXPIRE_BATCH_MAX = 200
log = structlog.get_logger(__name__)


class UnknownReference(ValidationFailed):
    code = "risk_reference_unknown"
    title = "Not a held movement's id"


async def resolve_held(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    reference: str,
    approve: bool,
    expired: bool = False,
) -> None:
    """Approve (post) or reject (void) the held movement `reference`; see the module. A
    rejection because the case's hold lapsed (`expired`) fails it ``risk_review_expired``,
    else ``risk_rejected``."""
    await _resolve(
        runtime,
        tenant_id=tenant_id,
        mode=mode,
        reference=reference,
        approve=approve,
        failure_code=gate.REVIEW_EXPIRED if expired else gate.REJECTED,
    )


async def _resolve(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    reference: str,
    approve: bool,
    failure_code: str,
) -> None:
    prefix = reference.partition("_")[0]
    if prefix == "pay":
        async with runtime.unit_of_work.begin() as session:
            payment = await load(
                session, parse_id("pay", reference), tenant_id=tenant_id, mode=mode
            )
        if payment.state == State.IN_REVIEW.value:
            await _resolve_payment(runtime, payment, approve=approve, failure_code=failure_code)
    elif prefix == "ref":
        refund_id = parse_id("ref", reference)
        async with runtime.unit_of_work.begin() as session:
            row = await PaymentRepository(session).get_refund(refund_id)
            if row is None:
                raise RefundNotFound("No such refund.")
            try:
                await load(session, row.payment_id, tenant_id=tenant_id, mode=mode)
            except PaymentNotFound as error:
                raise RefundNotFound("No such refund.") from error
        await finish_held_refund(runtime, refund_id, approve=approve, reason=failure_code)
    elif prefix == "cnv":
        await fx_review.settle_held_conversion(
            runtime.unit_of_work,
            runtime.book.ledger,
            tenant_id=ledger_tenant_of(tenant_id, mode),
            quote_id=parse_id("cnv", reference),
            approve=approve,
        )
    else:
        raise UnknownReference("A held movement is a pay_…, ref_… or cnv_… id.")


async def _resolve_payment(
    runtime: PaymentsRuntime, payment: Payment, *, approve: bool, failure_code: str
) -> None:
    kind = Kind(payment.kind)
    if not approve:
        await _reject(runtime, payment, failure_code=failure_code)
    elif kind is Kind.TOP_UP:
        await _approve_top_up(runtime, payment)
    elif kind is Kind.WITHDRAWAL:
        await _approve_withdrawal(runtime, payment)
    elif kind is Kind.P2P:
        await _approve_p2p(runtime, payment)
    else:
        await _approve_merchant(runtime, payment)


_HELD_STEPS = {
    Kind.TOP_UP: ["hold"],
    Kind.WITHDRAWAL: ["hold", *(f"hold:fee:{index}" for index in range(FEE_LINES_MAX))],
    Kind.P2P: ["hold", *(f"hold:fee:{index}" for index in range(HELD_FEE_LINES_MAX))],
    Kind.MERCHANT: ["hold"],
}


async def _reject(runtime: PaymentsRuntime, payment: Payment, *, failure_code: str) -> None:
    """Void whatever the payment holds and fail it (a hold posted meanwhile — an approval
    that got there first — wins: the payment is left to finish)."""
    if not await release_holds(runtime, payment, _HELD_STEPS[Kind(payment.kind)]):
        return
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id, for_update=True)
        if stored.state != State.IN_REVIEW.value:
            return
        stored.failure_code = failure_code
        stored.parked_instrument = None
        await transition(session, stored, State.FAILED, reason=failure_code)


async def _approve_top_up(runtime: PaymentsRuntime, payment: Payment) -> None:
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id)
        instrument = await gate.open_instrument(session, runtime, stored)
    if instrument is None:  # the user's keys were destroyed meanwhile: nothing to charge
        await _reject(runtime, payment, failure_code="instrument_unavailable")
        return
    await place_and_charge(runtime, payment.id, instrument)


async def _approve_withdrawal(runtime: PaymentsRuntime, payment: Payment) -> None:
    assert payment.debit_account_id is not None
    assert payment.credit_account_id is not None
    async with runtime.unit_of_work.begin() as session:
        fees = await PaymentRepository(session).fees(payment.id)
    hold = NewTransfer(
        id=step_id(payment.id, "hold"),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        debit_account_id=payment.debit_account_id,
        credit_account_id=payment.credit_account_id,
        amount=payment.amount,
        ledger=payment.currency,
        code=int(TransferCode.WITHDRAWAL),
        flags=int(TransferFlags.PENDING),
        user_data=format_id("pay", payment.id),
    )
    steps = [("hold", hold), *held_fees(payment, fees, payment.debit_account_id)]
    await _ensure_held(runtime, payment, steps)
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id, for_update=True)
        if stored.state != State.IN_REVIEW.value:
            return
        destination = await gate.open_instrument(session, runtime, stored)
        if destination is not None:
            stored.parked_instrument = None
            await transition(session, stored, State.PROCESSING, reason="risk_approved")
    if destination is None:
        await _reject(runtime, payment, failure_code="instrument_unavailable")
        return
    await request_payout(runtime, payment.id, destination)


async def _ensure_held(
    runtime: PaymentsRuntime, payment: Payment, steps: list[tuple[str, NewTransfer]]
) -> None:
    """Place the held chain again (answered `exists` when it is there: a crash may have
    come between the payment's record and its hold); refused, the payment fails."""
    results = await apply_steps(runtime, payment.id, chain(steps))
    if applied(results):
        return
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id)
        stored.failure_code = str(failure(results))[:64]
        stored.parked_instrument = None
        await advance(session, stored, State.FAILED, reason=stored.failure_code)
    raise_for(failure(results))


async def _approve_p2p(runtime: PaymentsRuntime, payment: Payment) -> None:
    held = await held_chain(runtime, payment)
    placed = await apply_steps(runtime, payment.id, chain(held))
    if not applied(placed):
        await hold_p2p(runtime, payment.id)  # fails the payment and raises the refusal
        return
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    posts = [
        (
            f"{step}:post",
            NewTransfer(
                id=step_id(payment.id, f"{step}:post"),
                tenant_id=ledger_tenant,
                pending_id=transfer.id,
                flags=int(TransferFlags.POST_PENDING),
                user_data=format_id("pay", payment.id),
            ),
        )
        for step, transfer in held
        if transfer.flags & TransferFlags.PENDING
    ]
    results = await apply_steps(runtime, payment.id, chain(posts))
    if not applied(results):
        raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id, for_update=True)
        if stored.state != State.IN_REVIEW.value:
            return
        stored.captured_amount = stored.amount
        await transition(session, stored, State.SUCCEEDED, reason="risk_approved")


async def _approve_merchant(runtime: PaymentsRuntime, payment: Payment) -> None:
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment.id, for_update=True)
        if stored.state != State.IN_REVIEW.value:
            return
        hold_ns = runtime.authorization_hold_s * 1_000_000_000
        stored.authorization_expires_at = now_ns() + hold_ns
        await transition(session, stored, State.AUTHORIZED, reason="risk_approved")
    if stored.capture_mode == "automatic":
        await capture(
            runtime,
            tenant_id=stored.tenant_id,
            mode=Mode(stored.mode),
            payment_id=stored.id,
            amount=None,
        )


class PaymentsHeldResolver:
    """This module as the review queue's held-movement resolver
    (``billfold.risk.cases.resolver.HeldMovementResolver``): resolves held payments
    (``pay_…``), refunds (``ref_…``) and conversions (``cnv_…``) idempotently; raises when
    the money did not move (the case is then retried). The expiry below uses it, and
    ``billfold.flows.held_movements`` installs it on the application."""

    def __init__(self, runtime: PaymentsRuntime) -> None:
        self._runtime = runtime

    async def resolve(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: str,
        reference: str,
        approve: bool,
        expired: bool = False,
    ) -> None:
        await resolve_held(
            self._runtime,
            tenant_id=tenant_id,
            mode=mode,
            reference=reference,
            approve=approve,
            expired=expired,
        )


async def expire_held(runtime: PaymentsRuntime, *, limit: int = EXPIRE_BATCH_MAX) -> int:
    """Expire the open cases past their hold's expiry and fail their movements
    (``risk_review_expired``), through the review queue's own expiry
    (``risk.cases.settlement.expire_due``): each case is claimed ``expired`` first, with
    its resolution and audit entry, and only then is its hold voided, so an analyst's
    approval racing the expiry either wins (the expiry leaves the case) or is refused;
    how many cases this call expired."""
    return await expire_due(
        runtime.unit_of_work,
        PaymentsHeldResolver(runtime),
        now_ns=time.time_ns(),
        limit=min(limit, EXPIRE_BATCH_MAX),
    )


_OUTCOMES = {
    "approved": (True, gate.REJECTED),
    "rejected": (False, gate.REJECTED),
    "expired": (False, gate.REVIEW_EXPIRED),
}


async def resume_decided(runtime: PaymentsRuntime, *, limit: int = EXPIRE_BATCH_MAX) -> int:
    """Finish payments and refunds still held whose case is no longer open (approved,
    rejected or expired), as the case says; how many were looked at."""
    bound = min(limit, EXPIRE_BATCH_MAX)
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        held = [
            (format_id("pay", row[0]), row[1], row[2]) for row in await repository.held(limit=bound)
        ]
        held += [
            (format_id("ref", row[0]), row[1], row[2])
            for row in await repository.held_refunds(limit=bound)
        ]
        decided = []
        for reference, tenant_id, mode in held:
            state = await case_state(session, tenant_id=tenant_id, mode=mode, reference=reference)
            if state in _OUTCOMES:
                decided.append((reference, tenant_id, mode, state))
    for reference, tenant_id, mode, state in decided:
        approve, failure_code = _OUTCOMES[state]
        try:
            await _resolve(
                runtime,
                tenant_id=tenant_id,
                mode=mode,
                reference=reference,
                approve=approve,
                failure_code=failure_code,
            )
            log.info("payments.review_resumed", reference=reference, case=state)
        except BillfoldError as error:
            log.info("payments.review_resume_failed", reference=reference, code=error.code)
    return len(held)

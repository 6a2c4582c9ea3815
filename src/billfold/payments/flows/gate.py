"""The risk decision of a payment path, in the transaction that creates the payment (or,
for a merchant payment, claims its payer): build the `Movement`, decide
(`billfold.risk.gate.judge`), and give each action its answer.

- **allow**: the path goes on as before.
- **challenge**: nothing is stored but the decision row; the flow raises
  `step_up_required` bound to the amount, currency and payee, with `decision_id`. The
  client steps up for exactly that and retries with the token, which the flow verifies
  *before* deciding (`step_up_verified`).
- **block**: nothing moves; the payment (if the attempt makes one) is recorded `failed`
  with `failure_code` `risk_blocked` (its ``failed`` event is emitted), and the flow raises
  403 `risk_blocked` with `decision_id`.
- **review**: the payment goes to `in_review`, a case opens in the same transaction, and
  the money is held as pending transfers (top-ups: parked before the provider is charged);
  `billfold.payments.flows.review.resolve_held` approves or rejects it.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from billfold.identity.types import Mode
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import DecryptionFailed, KeyDestroyed
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id
from billfold.payments.errors import StepUpRequired
from billfold.payments.models import Payment
from billfold.payments.runtime import PaymentsRuntime, ResponseEnforcer
from billfold.payments.service import transition
from billfold.payments.states import State
from billfold.risk.cases.responses import apply_responses
from billfold.risk.gate import RiskContext, Verdict, judge, open_review
from billfold.risk.reviews import close_case
from billfold.risk.types import Action, Movement, MovementKind

__all__ = [
    "BLOCKED",
    "REJECTED",
    "REVIEW_EXPIRED",
    "challenge_error",
    "close_review",
    "decide",
    "enter_outcome",
    "movement",
    "open_instrument",
    "seal_instrument",
]

log = structlog.get_logger(__name__)

BLOCKED = "risk_blocked"
REJECTED = "risk_rejected"
REVIEW_EXPIRED = "risk_review_expired"


def movement(
    *,
    tenant_id: uuid.UUID,
    mode: Mode | str,
    kind: MovementKind,
    amount: int,
    currency: str,
    at_ns: int,
    user_id: uuid.UUID | None,
    payee: str | None,
    reference: str,
    context: RiskContext,
    step_up_verified: bool = False,
    merchant_id: uuid.UUID | None = None,
) -> Movement:
    return Movement(
        tenant_id=tenant_id,
        mode=mode if isinstance(mode, str) else mode.value,
        kind=kind,
        amount=amount,
        currency=currency,
        occurred_at_ns=at_ns,
        user_id=user_id,
        payee=payee,
        merchant_id=merchant_id,
        device_id=context.device_id,
        ip=context.ip,
        ip_country=context.ip_country,
        reference=reference,
        step_up_verified=step_up_verified,
    )


async def decide(
    session: AsyncSession, runtime: PaymentsRuntime, subject: Movement, *, challengeable: bool
) -> Verdict:
    """The effective action on `subject` (``billfold.risk.gate.judge``), with the automated
    responses its decision asks for applied to the user in this transaction."""
    verdict = await judge(session, runtime.risk, subject, challengeable=challengeable)
    if verdict.decision is not None and verdict.decision.responses:
        applied = await apply_responses(
            session,
            decision=verdict.decision,
            movement=subject,
            at_ns=subject.occurred_at_ns,
            lower_limits_bps=runtime.risk_lower_limits_bps,
        )
        if applied and runtime.enforce_responses is not None:
            _enforce_after_commit(session, runtime.enforce_responses, applied)
    return verdict


_ENFORCING: set[asyncio.Task[None]] = set()
"""Enforcements under way (a task nobody holds may be collected before it ends)."""


def _enforce_after_commit(
    session: AsyncSession, enforce: ResponseEnforcer, response_ids: list[uuid.UUID]
) -> None:
    """Once the decision's transaction commits (never if it rolls back), freeze what its
    responses ask for at once, in a task of its own, rather than at the recovery sweep's
    next round (which still does it if this fails or the process stops first)."""

    async def run() -> None:
        try:
            await enforce(response_ids)
        except Exception:  # the sweep retries: the pending enforcement rows say what
            log.exception("payments.risk_enforcement_failed")

    def committed(_session: Session) -> None:
        task = asyncio.get_running_loop().create_task(run())
        _ENFORCING.add(task)
        task.add_done_callback(_ENFORCING.discard)

    event.listen(session.sync_session, "after_commit", committed, once=True)


def challenge_error(verdict: Verdict, *, step_up_payee: str) -> StepUpRequired:
    """`step_up_required` for a challenged movement: what the token must be bound to."""
    subject = verdict.movement
    return StepUpRequired(
        "Risk controls ask for a step-up token for this movement.",
        amount=str(subject.amount),
        currency=subject.currency,
        payee=step_up_payee,
        decision_id=verdict.public_decision_id,
    )


async def enter_outcome(
    session: AsyncSession, runtime: PaymentsRuntime, payment: Payment, verdict: Verdict
) -> None:
    """A just-recorded payment's answer to the decision: `failed` (block) or `in_review`
    with its case (review); allow leaves it as it is. Challenges record no payment."""
    payment.risk_decision_id = verdict.decision_id
    if verdict.action is Action.BLOCK:
        payment.failure_code = BLOCKED
        await transition(session, payment, State.FAILED, reason=BLOCKED)
    elif verdict.action is Action.REVIEW:
        await transition(session, payment, State.IN_REVIEW, reason="risk_review")
        await open_review(
            session,
            verdict,
            reference=verdict.movement.reference or "",
            hold_s=runtime.review_hold_s,
            at_ns=payment.updated_at,
        )


async def close_review(
    session: AsyncSession, payment: Payment, *, reference: str, at_ns: int
) -> None:
    """The hold of a reviewed movement could not be placed (or lapsed): its case closes
    as `expired` (nothing is left for an analyst to decide)."""
    await close_case(
        session,
        tenant_id=payment.tenant_id,
        mode=payment.mode,
        reference=reference,
        state="expired",
        at_ns=at_ns,
    )


def _instrument_context(payment: Payment) -> FieldContext:
    return FieldContext(
        tenant_id=payment.tenant_id,
        purpose="pii",
        table="payments_payments",
        column="parked_instrument",
        row_id=payment.id.hex,
    )


def _owner(payment: Payment) -> str:
    user = payment.payee_user_id if payment.kind == "top_up" else payment.payer_user_id
    return format_id("usr", user) if user is not None else format_id("pay", payment.id)


async def seal_instrument(
    session: AsyncSession, runtime: PaymentsRuntime, payment: Payment, instrument: str
) -> None:
    """Keep the card or account number of a top-up or withdrawal parked for review
    (Billfold otherwise keeps only its last four characters): sealed with the keyring
    under the user's keys, until the provider is asked."""
    keyring = runtime.keyring
    invariant(keyring is not None, "the payments runtime has the app's keyring")
    assert keyring is not None
    payment.parked_instrument = await keyring.encrypt(
        session,
        instrument.encode(),
        context=_instrument_context(payment),
        owner=_owner(payment),
        now_ns=payment.updated_at,
    )


async def open_instrument(
    session: AsyncSession, runtime: PaymentsRuntime, payment: Payment
) -> str | None:
    """The parked instrument; None when there is none or it no longer decrypts (the
    user's keys were destroyed). A runtime without the keyring cannot tell: it raises
    (so a process without it never fails a movement it could not read)."""
    if payment.parked_instrument is None:
        return None
    invariant(runtime.keyring is not None, "the payments runtime has the app's keyring")
    assert runtime.keyring is not None
    try:
        plaintext = await runtime.keyring.decrypt(
            session, payment.parked_instrument, context=_instrument_context(payment)
        )
    except (DecryptionFailed, KeyDestroyed):
        return None
    return plaintext.decode()

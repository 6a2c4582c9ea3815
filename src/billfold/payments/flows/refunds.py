"""Refunds of a captured merchant payment: full or partial, several per payment, never
more than was captured in total. The payment row is locked while a refund reserves its
amount, so concurrent refunds cannot together exceed the capture.

**Fees on refunds.** The capture's fees are returned to the merchant pro rata to the
amount refunded, except their fixed part (and what a minimum added), which Billfold keeps:
a refund returns ``floor(P * refunded_after / captured) - floor(P * refunded_before /
captured)`` where ``P`` is the proportional part of the capture fees, so the refunds of a
whole capture return exactly ``P``. The return is its own transfer (fee revenue → the
merchant's wallet, code `FEE_RETURN`) linked with the refund's, and a negative line in the
payment's fees."""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags
from billfold.payments.errors import InvalidStateTransition, RefundExceedsCaptured
from billfold.payments.flows import gate
from billfold.payments.flows.common import (
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
)
from billfold.payments.models import Payment, PaymentFee, Refund
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import transition
from billfold.payments.states import State
from billfold.payments.steps import APPLIED, applied, step_id
from billfold.risk.gate import RiskContext, open_review
from billfold.risk.types import Action, MovementKind
from billfold.wallets.accounts import SystemRole, TransferCode, system_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "RETURN_RULE",
    "drive_refund",
    "fee_return",
    "finish_held_refund",
    "held_refund_chain",
    "hold_refund",
    "refund",
]

RETURN_RULE = "fee_return"

_REFUNDABLE = (State.CAPTURED.value, State.PARTIALLY_REFUNDED.value)
_VOIDED = (
    *APPLIED,
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferStatus.PENDING_TRANSFER_EXPIRED,
)
NO_CONTEXT = RiskContext()


async def refund(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str | None,
    context: RiskContext = NO_CONTEXT,
) -> uuid.UUID:
    """Refund `amount` (all that is left by default), past the risk decision first: a
    refund has no end user to step up, so a challenge is held for review like a `review`
    (the refund `in_review`, merchant → customer held as pending transfers); a blocked
    refund is recorded `failed` (`risk_blocked`) and reserves nothing."""
    refund_id = new_id()
    async with runtime.unit_of_work.begin() as session:
        payment = await load(
            session, payment_id, tenant_id=tenant_id, mode=mode.value, for_update=True
        )
        if payment.state not in _REFUNDABLE:
            raise InvalidStateTransition(f"A {payment.state} payment cannot be refunded.")
        repository = PaymentRepository(session)
        # What disputes not won claim back is not refunded as well: the payer is paid once.
        disputed = await repository.disputed_amount(payment_id)
        left = max(payment.captured_amount - payment.refunded_amount - disputed, 0)
        amount = left if amount is None else amount
        if amount > left or amount <= 0:
            raise RefundExceedsCaptured(
                f"At most {left} more can be refunded"
                + (f" ({disputed} is disputed)." if disputed else "."),
                refundable=str(left),
            )
        returned = fee_return(
            payment,
            await repository.fees(payment_id),
            refunded_before=payment.refunded_amount,
            already_returned=await repository.fees_returned(payment_id),
        )
        now = now_ns()
        verdict = await gate.decide(
            session,
            runtime,
            gate.movement(
                tenant_id=tenant_id,
                mode=mode,
                kind=MovementKind.REFUND,
                amount=amount,
                currency=payment.currency,
                at_ns=now,
                user_id=None,
                payee=None
                if payment.payer_user_id is None
                else format_id("usr", payment.payer_user_id),
                merchant_id=payment.merchant_id,
                reference=format_id("ref", refund_id),
                context=context,
            ),
            challengeable=False,
        )
        row = Refund(
            id=refund_id,
            payment_id=payment_id,
            amount=amount,
            state="pending",
            reason=reason,
            fee_returned=returned(amount),
            risk_decision_id=verdict.decision_id,
            created_at=now,
        )
        if verdict.action is Action.BLOCK:
            row.state, row.failure_code, row.fee_returned = "failed", gate.BLOCKED, 0
        else:
            payment.refunded_amount += amount
        if verdict.action is Action.REVIEW:
            row.state = "in_review"
            await open_review(
                session,
                verdict,
                reference=format_id("ref", refund_id),
                hold_s=runtime.review_hold_s,
                at_ns=now,
            )
        await repository.add(row)
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    if verdict.action is Action.REVIEW:
        return await hold_refund(runtime, refund_id)
    return await drive_refund(runtime, row.id)


def fee_return(
    payment: Payment,
    fees: list[PaymentFee],
    *,
    refunded_before: int,
    already_returned: int = 0,
) -> _Returner:
    """How much of the capture fees a refund of `amount` returns, given what was refunded
    (or reserved by pending refunds) before it, and what the refunds not failed return
    (`already_returned`): never more than the proportional part left, so the refunds
    return at most that part in total even when one failed after others were priced."""
    capture_ids = {step_id(payment.id, f"capture:fee:{index}") for index in range(len(fees))}
    proportional = sum(
        fee.amount - fee.fixed_amount
        for fee in fees
        if fee.transfer_id in capture_ids and fee.amount > 0
    )

    def returned(amount: int) -> int:
        captured = payment.captured_amount
        if captured <= 0 or proportional <= 0:
            return 0
        after = proportional * (refunded_before + amount) // captured
        pro_rata = after - proportional * refunded_before // captured
        return max(0, min(pro_rata, proportional - already_returned))

    return returned


class _Returner(Protocol):
    def __call__(self, amount: int, /) -> int: ...


async def drive_refund(runtime: PaymentsRuntime, refund_id: uuid.UUID) -> uuid.UUID:
    """Move a pending refund's money and record the outcome; safe to call again after a
    crash at any point (the transfer id is the refund's; a settled refund is left alone)."""
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_refund(refund_id)
        if row is None:
            raise InvariantViolation("a driven refund exists")
        if row.state != "pending":
            return refund_id
        payment = await load(session, row.payment_id)
    if payment.credit_account_id is None or payment.debit_account_id is None:
        raise InvariantViolation("a paid payment has both accounts")
    transfer = NewTransfer(
        id=step_id(refund_id, "refund"),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        debit_account_id=payment.credit_account_id,
        credit_account_id=payment.debit_account_id,
        amount=row.amount,
        ledger=payment.currency,
        code=int(TransferCode.REFUND),
        user_data=format_id("ref", refund_id),
    )
    steps = [(f"refund:{refund_id.hex}", transfer)]
    if row.fee_returned > 0:
        ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
        revenue = system_account_id(
            ledger_tenant, name=SystemRole.FEE_REVENUE.value, currency=payment.currency
        )
        fee_back = NewTransfer(
            id=step_id(refund_id, "fee"),
            tenant_id=ledger_tenant,
            debit_account_id=revenue,
            credit_account_id=payment.credit_account_id,
            amount=row.fee_returned,
            ledger=payment.currency,
            code=int(TransferCode.FEE_RETURN),
            user_data=format_id("ref", refund_id),
        )
        steps.append((f"refund:{refund_id.hex}:fee", fee_back))
    results = await apply_steps(runtime, payment.id, chain(steps))
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment.id, for_update=True)
        stored = await PaymentRepository(session).get_refund(refund_id)
        if stored is None or stored.state != "pending":
            return refund_id  # a concurrent drive recorded it first
        if not applied(results):
            stored.state, stored.failure_code = "failed", str(failure(results))[:64]
            stored.fee_returned = 0
            payment.refunded_amount -= stored.amount
        else:
            await _succeeded(session, payment, stored, fee_transfer_id=step_id(refund_id, "fee"))
    if not applied(results):
        raise_for(failure(results))
    return refund_id


async def _succeeded(
    session: AsyncSession, payment: Payment, stored: Refund, *, fee_transfer_id: uuid.UUID
) -> None:
    """Record a refund the ledger applied: its fee return line and the payment's state."""
    stored.state = "succeeded"
    reference = format_id("ref", stored.id)
    if stored.fee_returned > 0:
        await PaymentRepository(session).record_fee(
            PaymentFee(
                transfer_id=fee_transfer_id,
                payment_id=payment.id,
                rule=RETURN_RULE,
                description=f"Fees returned pro rata with {reference}",
                amount=-stored.fee_returned,
                currency=payment.currency,
                fixed_amount=0,
            )
        )
    # Fully refunded only once no other refund still reserves part of the amount: one
    # pending or in review may yet fail and give its part back (refundable again), and
    # `refunded` is final.
    others = await PaymentRepository(session).refunds(payment.id)
    reserving = any(r.id != stored.id and r.state in ("pending", "in_review") for r in others)
    full = payment.refunded_amount == payment.captured_amount and not reserving
    await transition(
        session, payment, State.REFUNDED if full else State.PARTIALLY_REFUNDED, reason=reference
    )


def held_refund_chain(payment: Payment, row: Refund) -> list[tuple[str, NewTransfer]]:
    """The pending transfers that hold a refund in review: merchant → customer, and the
    fee return (fee revenue → merchant), ids from the refund's."""
    if payment.credit_account_id is None or payment.debit_account_id is None:
        raise InvariantViolation("a paid payment has both accounts")
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    prefix = f"refund:{row.id.hex}"
    steps = [
        (
            f"{prefix}:hold",
            NewTransfer(
                id=step_id(row.id, "hold"),
                tenant_id=ledger_tenant,
                debit_account_id=payment.credit_account_id,
                credit_account_id=payment.debit_account_id,
                amount=row.amount,
                ledger=payment.currency,
                code=int(TransferCode.REFUND),
                flags=int(TransferFlags.PENDING),
                user_data=format_id("ref", row.id),
            ),
        )
    ]
    if row.fee_returned > 0:
        revenue = system_account_id(
            ledger_tenant, name=SystemRole.FEE_REVENUE.value, currency=payment.currency
        )
        steps.append(
            (
                f"{prefix}:fee:hold",
                NewTransfer(
                    id=step_id(row.id, "fee:hold"),
                    tenant_id=ledger_tenant,
                    debit_account_id=revenue,
                    credit_account_id=payment.credit_account_id,
                    amount=row.fee_returned,
                    ledger=payment.currency,
                    code=int(TransferCode.FEE_RETURN),
                    flags=int(TransferFlags.PENDING),
                    user_data=format_id("ref", row.id),
                ),
            )
        )
    return steps


async def hold_refund(runtime: PaymentsRuntime, refund_id: uuid.UUID) -> uuid.UUID:
    """Place (again: idempotent) the pending transfers of a refund in review; refused by
    the ledger (the merchant's funds), the refund fails and its case closes."""
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_refund(refund_id)
        if row is None:
            raise InvariantViolation("a held refund exists")
        payment = await load(session, row.payment_id)
    if row.state != "in_review":
        return refund_id
    results = await apply_steps(runtime, payment.id, chain(held_refund_chain(payment, row)))
    if applied(results):
        return refund_id
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment.id, for_update=True)
        stored = await PaymentRepository(session).get_refund(refund_id)
        if stored is not None and stored.state == "in_review":
            stored.state, stored.failure_code = "failed", str(failure(results))[:64]
            stored.fee_returned = 0
            payment.refunded_amount -= stored.amount
            await gate.close_review(
                session, payment, reference=format_id("ref", refund_id), at_ns=now_ns()
            )
    raise_for(failure(results))
    return refund_id


async def finish_held_refund(
    runtime: PaymentsRuntime, refund_id: uuid.UUID, *, approve: bool, reason: str
) -> None:
    """Post (approve) or void a refund in review; idempotent, crash-safe (the outcome's
    transfer ids derive from the refund's), a settled refund is left alone."""
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_refund(refund_id)
        if row is None:
            raise InvariantViolation("a held refund exists")
        payment = await load(session, row.payment_id)
    if row.state != "in_review":
        return
    held = held_refund_chain(payment, row)
    if approve:
        placed = await apply_steps(runtime, payment.id, chain(held))
        if not applied(placed):
            await hold_refund(runtime, refund_id)  # fails it, and raises the ledger's refusal
        outcome, flag = "post", TransferFlags.POST_PENDING
    else:
        outcome, flag = "void", TransferFlags.VOID_PENDING
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    steps = [
        (
            f"{step.removesuffix(':hold')}:{outcome}",
            NewTransfer(
                id=step_id(transfer.id, outcome),
                tenant_id=ledger_tenant,
                pending_id=transfer.id,
                flags=int(flag),
                user_data=format_id("ref", refund_id),
            ),
        )
        for step, transfer in held
    ]
    if approve:
        results = await apply_steps(runtime, payment.id, chain(steps))
        if not applied(results):
            raise_for(failure(results))
    else:
        ids = [transfer.id for _, transfer in held]
        found = await runtime.book.ledger.lookup_transfers(tenant_id=ledger_tenant, ids=ids)
        present = {transfer.id for transfer in found}
        voids = [(step, t) for step, t in steps if t.pending_id in present]
        results = await apply_steps(runtime, payment.id, voids) if voids else []
        if not all(result.status in _VOIDED for result in results):
            raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment.id, for_update=True)
        stored = await PaymentRepository(session).get_refund(refund_id)
        if stored is None or stored.state != "in_review":
            return
        if approve:
            fee_id = step_id(step_id(refund_id, "fee:hold"), "post")
            await _succeeded(session, payment, stored, fee_transfer_id=fee_id)
        else:
            stored.state, stored.failure_code = "failed", reason[:64]
            stored.fee_returned = 0
            payment.refunded_amount -= stored.amount

"""Refunds of a captured merchant payment: full or partial, several per payment, never
more than was captured in total. The payment row is locked while a refund reserves its
amount, so concurrent refunds cannot together exceed the capture."""

from __future__ import annotations

import uuid

from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import InvalidStateTransition, RefundExceedsCaptured
from billfold.payments.flows.common import apply_steps, failure, load, now_ns, raise_for
from billfold.payments.models import Refund
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import transition
from billfold.payments.states import State
from billfold.payments.steps import applied, step_id
from billfold.wallets.accounts import TransferCode
from billfold.wallets.service import ledger_tenant_of

__all__ = ["drive_refund", "refund"]

_REFUNDABLE = (State.CAPTURED.value, State.PARTIALLY_REFUNDED.value)


async def refund(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str | None,
) -> uuid.UUID:
    async with runtime.unit_of_work.begin() as session:
        payment = await load(
            session, payment_id, tenant_id=tenant_id, mode=mode.value, for_update=True
        )
        if payment.state not in _REFUNDABLE:
            raise InvalidStateTransition(f"A {payment.state} payment cannot be refunded.")
        left = payment.captured_amount - payment.refunded_amount
        amount = left if amount is None else amount
        if amount > left or amount <= 0:
            raise RefundExceedsCaptured(
                f"At most {left} more can be refunded.", refundable=str(left)
            )
        row = Refund(
            id=new_id(),
            payment_id=payment_id,
            amount=amount,
            state="pending",
            reason=reason,
            created_at=now_ns(),
        )
        payment.refunded_amount += amount
        await PaymentRepository(session).add(row)
    return await drive_refund(runtime, row.id)


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
    results = await apply_steps(runtime, payment.id, [(f"refund:{refund_id.hex}", transfer)])
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment.id, for_update=True)
        stored = await PaymentRepository(session).get_refund(refund_id)
        if stored is None or stored.state != "pending":
            return refund_id  # a concurrent drive recorded it first
        if not applied(results):
            stored.state, stored.failure_code = "failed", str(failure(results))[:64]
            payment.refunded_amount -= stored.amount
        else:
            stored.state = "succeeded"
            full = payment.refunded_amount == payment.captured_amount
            await transition(
                session,
                payment,
                State.REFUNDED if full else State.PARTIALLY_REFUNDED,
                reason=format_id("ref", refund_id),
            )
    if not applied(results):
        raise_for(failure(results))
    return refund_id

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

from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import InvalidStateTransition, RefundExceedsCaptured
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
from billfold.payments.steps import applied, step_id
from billfold.wallets.accounts import SystemRole, TransferCode, system_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = ["RETURN_RULE", "drive_refund", "fee_return", "refund"]

RETURN_RULE = "fee_return"

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
        repository = PaymentRepository(session)
        returned = fee_return(
            payment, await repository.fees(payment_id), refunded_before=payment.refunded_amount
        )
        row = Refund(
            id=new_id(),
            payment_id=payment_id,
            amount=amount,
            state="pending",
            reason=reason,
            fee_returned=returned(amount),
            created_at=now_ns(),
        )
        payment.refunded_amount += amount
        await repository.add(row)
    return await drive_refund(runtime, row.id)


def fee_return(payment: Payment, fees: list[PaymentFee], *, refunded_before: int) -> _Returner:
    """How much of the capture fees a refund of `amount` returns, given what was refunded
    (or reserved by pending refunds) before it."""
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
        return after - proportional * refunded_before // captured

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
            stored.state = "succeeded"
            if stored.fee_returned > 0:
                await PaymentRepository(session).record_fee(
                    PaymentFee(
                        transfer_id=step_id(refund_id, "fee"),
                        payment_id=payment.id,
                        rule=RETURN_RULE,
                        description=f"Fees returned pro rata with {format_id('ref', refund_id)}",
                        amount=-stored.fee_returned,
                        currency=payment.currency,
                        fixed_amount=0,
                    )
                )
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

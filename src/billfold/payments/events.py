"""The events a payment emits, through the transactional outbox: one per state it enters,
written in the same database transaction as the change (``billfold.events.outbox``).

Type ``com.billfold.payment.<state>.v1`` (``created`` for a new payment whatever its first
state, then ``authorized``, ``captured``, ``partially_refunded``, ``refunded``, ``failed``,
``voided``, ``expired``, ``succeeded``, ``processing``, ``requires_action``, ``in_review``
(held by a risk decision)…), subject the
payment's ``pay_…`` id, aggregate the payment (so its events keep their order).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.outbox import emit
from billfold.identity.types import Mode
from billfold.kit.ids import format_id
from billfold.payments.models import Payment

__all__ = ["PAYMENT_EVENT_TYPE", "emit_payment_event", "payment_event_data"]

PAYMENT_EVENT_TYPE = "com.billfold.payment.{state}.v1"


def payment_event_data(payment: Payment, *, previous_state: str | None) -> dict[str, Any]:
    """The documented payload: amounts are decimal strings of minor units."""
    return {
        "id": format_id("pay", payment.id),
        "kind": payment.kind,
        "state": payment.state,
        "previous_state": previous_state,
        "amount": str(payment.amount),
        "currency": payment.currency,
        "captured_amount": str(payment.captured_amount),
        "refunded_amount": str(payment.refunded_amount),
        "merchant_id": None
        if payment.merchant_id is None
        else format_id("mer", payment.merchant_id),
        "reference": payment.reference,
    }


def _public_id(prefix: str, value: uuid.UUID | None) -> str | None:
    return None if value is None else format_id(prefix, value)


def emit_payment_event(
    session: AsyncSession, payment: Payment, *, previous_state: str | None, at_ns: int
) -> None:
    """Queue the event of `payment` entering its current state (``created`` when new)."""
    state = "created" if previous_state is None else payment.state
    emit(
        session,
        tenant_id=payment.tenant_id,
        mode=Mode(payment.mode),
        type=PAYMENT_EVENT_TYPE.format(state=state),
        subject=format_id("pay", payment.id),
        aggregate_id=payment.id,
        data=payment_event_data(payment, previous_state=previous_state),
        occurred_at_ns=at_ns,
    )

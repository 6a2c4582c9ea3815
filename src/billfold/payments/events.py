"""The events a payment emits, through the transactional outbox: one per state it enters,
written in the same database transaction as the change (``billfold.events.outbox``).

Type ``com.billfold.payment.<state>.v1`` (``created`` for a new payment whatever its first
state, then ``authorized``, ``captured``, ``partially_refunded``, ``refunded``, ``failed``,
``voided``, ``expired``, ``succeeded``, ``processing``, ``requires_action``, ``in_review``
(held by a risk decision)…), subject the
payment's ``pay_…`` id, aggregate the payment (so its events keep their order).

A dispute's events are ``com.billfold.dispute.<what>.v1`` (``opened`` once its hold is
placed, then ``won`` or ``lost`` once the ledger has applied the outcome), subject the
dispute's ``dsp_…`` id, aggregate the disputed payment (ordered with its events).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.outbox import emit
from billfold.identity.types import Mode
from billfold.kit.ids import format_id
from billfold.payments.models import Dispute, Payment

__all__ = [
    "DISPUTE_EVENT_TYPE",
    "PAYMENT_EVENT_TYPE",
    "dispute_event_data",
    "emit_dispute_event",
    "emit_payment_event",
    "payment_event_data",
]

PAYMENT_EVENT_TYPE = "com.billfold.payment.{state}.v1"
DISPUTE_EVENT_TYPE = "com.billfold.dispute.{what}.v1"
_DISPUTE_EVENTS = {"open": "opened", "won": "won", "lost": "lost"}
"""The dispute states that emit an event, and the event's `<what>`."""


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


def dispute_event_data(dispute: Dispute, payment: Payment) -> dict[str, Any]:
    """The documented payload: amounts are decimal strings of minor units."""
    return {
        "id": format_id("dsp", dispute.id),
        "payment_id": format_id("pay", payment.id),
        "state": dispute.state,
        "amount": str(dispute.amount),
        "held_amount": str(dispute.held_amount),
        "currency": payment.currency,
        "opened_by": dispute.opened_by,
        "reason": dispute.reason,
        "provider_dispute_id": dispute.provider_dispute_id,
        "updated_at": dispute.updated_at,
    }


def emit_dispute_event(session: AsyncSession, dispute: Dispute, payment: Payment) -> None:
    """Queue the event of `dispute` entering its current state (`open`, `won` or `lost`)."""
    emit(
        session,
        tenant_id=payment.tenant_id,
        mode=Mode(payment.mode),
        type=DISPUTE_EVENT_TYPE.format(what=_DISPUTE_EVENTS[dispute.state]),
        subject=format_id("dsp", dispute.id),
        aggregate_id=payment.id,
        data=dispute_event_data(dispute, payment),
        occurred_at_ns=dispute.updated_at,
    )

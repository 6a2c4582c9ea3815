"""Inbound provider notifications: stored first (unique by provider and event id), then
processed idempotently. A duplicate finds its stored twin already processed; a late or
out-of-order one finds the payment past the state it reports and is ignored; a step
re-driven submits the same transfer ids, so nothing ever moves twice.

`process_notification` can be called from anywhere (the route, a worker, a retry)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from billfold.connectors.repository import NotificationRepository
from billfold.connectors.types import Notification, NotificationType
from billfold.kit.ids import InvalidId, parse_id
from billfold.payments.flows.disputes import open_dispute, resolve_dispute
from billfold.payments.flows.topups import fail_top_up, settle_top_up
from billfold.payments.flows.withdrawals import finish_withdrawal
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.states import Kind

__all__ = ["process_notification", "receive_notification"]

T = NotificationType


async def receive_notification(
    runtime: PaymentsRuntime, *, provider: str, body: bytes, headers: Mapping[str, str]
) -> tuple[uuid.UUID, str]:
    """Verify, store and process one delivery: the stored id and what processing did."""
    notification = runtime.provider(provider).parse_notification(
        body=body,
        headers=headers,
        now_s=int(time.time()),
        tolerance_s=runtime.webhook_tolerance_s,
    )
    async with runtime.unit_of_work.begin() as session:
        stored = await NotificationRepository(session).store(
            provider=provider, notification=notification, body=body
        )
    if stored.processed_at is not None:
        return stored.id, "duplicate"
    return stored.id, await process_notification(
        runtime, notification_id=stored.id, notification=notification
    )


async def process_notification(
    runtime: PaymentsRuntime, *, notification_id: uuid.UUID, notification: Notification
) -> str:
    """Apply a stored notification's effect once and mark it processed; its outcome."""
    outcome = await _apply(runtime, notification)
    async with runtime.unit_of_work.begin() as session:
        await NotificationRepository(session).mark_processed(
            notification_id=notification_id, outcome=outcome
        )
    return outcome


async def _apply(runtime: PaymentsRuntime, notification: Notification) -> str:
    try:
        payment_id = parse_id("pay", notification.reference)
    except InvalidId:
        return "unknown_payment"
    async with runtime.unit_of_work.begin() as session:
        payment = await PaymentRepository(session).get(payment_id)
    if payment is None or payment.provider is None:
        return "unknown_payment"
    kind = Kind(payment.kind)
    reason = f"{notification.type.value}:{notification.event_id}"[:128]
    if kind is Kind.TOP_UP and notification.type is T.CHARGE_SUCCEEDED:
        return await settle_top_up(runtime, payment_id, reason=reason)
    if kind is Kind.TOP_UP and notification.type is T.CHARGE_FAILED:
        return await fail_top_up(
            runtime, payment_id, reason=notification.failure_code or "charge_failed"
        )
    if kind is Kind.WITHDRAWAL and notification.type in (T.PAYOUT_SUCCEEDED, T.PAYOUT_FAILED):
        succeeded = notification.type is T.PAYOUT_SUCCEEDED
        return await finish_withdrawal(
            runtime,
            payment_id,
            succeeded=succeeded,
            reason=reason if succeeded else notification.failure_code or "payout_failed",
        )
    if notification.type is T.DISPUTE_OPENED and notification.dispute_id is not None:
        return await open_dispute(
            runtime,
            payment_id=payment_id,
            amount=notification.amount_minor,
            opened_by="provider",
            reason="provider",
            provider_dispute_id=notification.dispute_id,
        )
    if notification.type in (T.DISPUTE_WON, T.DISPUTE_LOST) and notification.dispute_id:
        async with runtime.unit_of_work.begin() as session:
            dispute = await PaymentRepository(session).dispute_by_provider_id(
                notification.dispute_id
            )
        if dispute is None:
            return "unknown_dispute"
        return await resolve_dispute(
            runtime, dispute_id=dispute.id, won=notification.type is T.DISPUTE_WON
        )
    return "ignored_stale"

"""Inbound provider notifications, through the events domain's inbound machinery: the
route verifies the signature and stores the notification (`store_inbound`, source
`connectors.<provider>`, external id the provider's event id, so a resend is stored once);
the worker applies it later (`apply_stored`, registered per provider by
`register_notification_handlers`).

Applying drives the ledger in its own units of work, so it runs outside the transaction
that marks the notification processed, and is idempotent instead: a duplicate, a late or
out-of-order notification, or a retry after a crash finds the payment past the state it
reports and changes nothing; a step re-driven submits the same transfer ids, so nothing
ever moves twice. A notification applies only to the payment it describes: one of its own
provider's, in the payment's currency and, for a charge's or payout's outcome, of its
amount; a dispute only through the payment it disputes.

What cannot apply is told apart by whether it ever could. A notification that changes
nothing (a duplicate, a stale or out-of-order report, one about no payment of its
provider, or not of the payment's money) is processed, its outcome logged: applying it
correctly is doing nothing, so there is nothing to retry (one reporting the opposite of
the outcome recorded is a warning for an operator, `_CONTRADICTED`). A refusal that
can pass (a dispute of a charge still processing, a dispute still opening or not opened
yet, the ledger refusing a dispute's money movement for a frozen wallet, a lock, the
database) is raised, so the notification is retried. A refusal that no retry can change
(a dispute of more than the payment can ever give back, of a withdrawal or a failed
payment, an outcome opposite to the one the dispute took, a stored payload that is not a
notification) raises `PermanentInboundError`: failed at once, its reason kept for
an operator, since the provider says money moved and the books cannot follow."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from billfold.connectors.types import Notification, NotificationType
from billfold.events.inbound import (
    InboundRegistry,
    PermanentInboundError,
    StoredInbound,
    store_inbound,
)
from billfold.kit.errors import UnsupportedMediaType
from billfold.kit.http.bodies import is_json_media_type
from billfold.kit.ids import InvalidId, parse_id
from billfold.payments.errors import InvalidStateTransition, RefundExceedsCaptured
from billfold.payments.flows.common import load
from billfold.payments.flows.disputes import (
    open_dispute,
    opening_refused_for_good,
    resolution_refused_for_good,
    resolve_dispute,
)
from billfold.payments.flows.topups import (
    AUTHENTICATION_ABANDONED,
    abandon_top_up,
    abandonment_voided,
    fail_top_up,
    settle_top_up,
)
from billfold.payments.flows.withdrawals import finish_withdrawal
from billfold.payments.models import Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.states import Kind, State

__all__ = [
    "apply_stored",
    "notification_source",
    "receive_notification",
    "register_notification_handlers",
]

log = structlog.get_logger(__name__)
T = NotificationType


def notification_source(provider: str) -> str:
    return f"connectors.{provider}"


async def receive_notification(
    runtime: PaymentsRuntime, *, provider: str, body: bytes, headers: Mapping[str, str]
) -> StoredInbound:
    """Verify and store one delivery for the worker (a resend is stored once). The
    signature comes first (401), then the body (400), then its media type: a provider's
    event is JSON, and one sent as anything else is 415, as any route's body is."""
    notification = runtime.provider(provider).parse_notification(
        body=body,
        headers=headers,
        now_s=int(time.time()),
        tolerance_s=runtime.webhook_tolerance_s,
    )
    if not is_json_media_type(headers.get("content-type")):
        raise UnsupportedMediaType(
            "A notification is JSON: send it as Content-Type: application/json."
        )
    payload = {**asdict(notification), "type": notification.type.value}
    for attempt in range(2):  # a racing twin's insert wins once; the retry then finds it
        try:
            async with runtime.unit_of_work.begin() as session:
                return await store_inbound(
                    session,
                    source=notification_source(provider),
                    external_id=notification.event_id,
                    payload=payload,
                    now_ns=time.time_ns(),
                )
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def apply_stored(
    runtime: PaymentsRuntime, payload: Mapping[str, Any], *, provider: str
) -> str:
    """Apply a notification `provider` sent (stored; idempotent); what it did. Raises
    `PermanentInboundError` when it can never apply (see above)."""
    notification = _notification_of(payload)
    outcome = await _apply(runtime, notification, provider=provider)
    if outcome in _CONTRADICTED.get(notification.type, ()):
        log.warning(
            "payments.notification_contradicts_outcome",
            provider=provider,
            event_id=notification.event_id,
            type=notification.type.value,
            reference=notification.reference,
            outcome=outcome,
        )
    log.info(
        "payments.notification_applied",
        provider=provider,
        event_id=notification.event_id,
        outcome=outcome,
    )
    return outcome


class DisputeLedgerRefusedError(Exception):
    """The ledger refused a dispute's hold with a refusal that may pass (a frozen wallet):
    retryable, the dispute recorded `opening` meanwhile (`flows.disputes`)."""


class DisputeNotOpenYetError(Exception):
    """A dispute's outcome arrived before the dispute was opened here: retryable (the
    inbound processor's schedule), since its `dispute.opened` may still be applied."""


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "event_id": str,
    "reference": str,
    "provider_reference": str,
    "amount_minor": int,
    "currency": str,
    "created_at_s": int,
    "failure_code": (str, type(None)),
    "dispute_id": (str, type(None)),
}


def _notification_of(payload: Mapping[str, Any]) -> Notification:
    """The stored notification, rebuilt as the route stored it (`asdict` of a parsed
    one). A payload of other fields or types (not stored by this route: by hand, or by
    another release) is the same on every attempt, so it is rejected, not retried, and
    never applied with a `true` or `"5000"` where an amount belongs."""
    fields = dict(payload)
    try:
        kind = NotificationType(fields.pop("type", None))
    except ValueError:
        raise PermanentInboundError("the stored payload is not a notification: type") from None
    wrong = sorted(set(fields) - set(_FIELD_TYPES))
    wrong += [
        name
        for name, expected in _FIELD_TYPES.items()
        if isinstance(fields.get(name), bool) or not isinstance(fields.get(name), expected)
    ]
    if wrong:
        raise PermanentInboundError(f"the stored payload is not a notification: {', '.join(wrong)}")
    return Notification(type=kind, **fields)


def register_notification_handlers(registry: InboundRegistry, runtime: PaymentsRuntime) -> None:
    """One standalone handler per provider of `runtime`, on `connectors.<provider>`: each
    knows its provider, so a notification applies only to that provider's payments."""
    for provider in runtime.providers:
        registry.register_standalone(
            notification_source(provider), functools.partial(_handle, runtime, provider=provider)
        )


async def _handle(runtime: PaymentsRuntime, payload: Mapping[str, Any], *, provider: str) -> None:
    await apply_stored(runtime, payload, provider=provider)


async def _apply(runtime: PaymentsRuntime, notification: Notification, *, provider: str) -> str:
    try:
        payment_id = parse_id("pay", notification.reference)
    except InvalidId:
        return "unknown_payment"
    async with runtime.unit_of_work.begin() as session:
        payment = await PaymentRepository(session).get(payment_id)
    if payment is None or payment.provider != provider:
        # Another provider's payment (or none at all): a provider speaks only for the
        # charges and payouts it was asked for, whatever reference its message names.
        return "unknown_payment"
    if not _describes(notification, payment):
        log.warning(
            "payments.notification_mismatch",
            provider=provider,
            event_id=notification.event_id,
            payment=payment_id.hex,
        )
        return "ignored_mismatch"
    kind = Kind(payment.kind)
    if payment.provider_reference is None and notification.type in _ANSWERS.get(kind, ()):
        await _record_reference(runtime, payment_id, notification.provider_reference)
    reason = f"{notification.type.value}:{notification.event_id}"[:128]
    if kind is Kind.TOP_UP and notification.type is T.CHARGE_SUCCEEDED:
        outcome = await settle_top_up(runtime, payment_id, reason=reason)
        return await _after_settling(runtime, notification, payment_id, outcome, provider)
    if kind is Kind.TOP_UP and notification.type is T.CHARGE_FAILED:
        outcome = await fail_top_up(
            runtime, payment_id, reason=notification.failure_code or "charge_failed"
        )
        return await _after_failing(runtime, payment_id, outcome)
    if kind is Kind.WITHDRAWAL and notification.type in (T.PAYOUT_SUCCEEDED, T.PAYOUT_FAILED):
        succeeded = notification.type is T.PAYOUT_SUCCEEDED
        return await finish_withdrawal(
            runtime,
            payment_id,
            succeeded=succeeded,
            reason=reason if succeeded else notification.failure_code or "payout_failed",
        )
    if notification.type is T.DISPUTE_OPENED and notification.dispute_id is not None:
        return await _open_dispute(
            runtime, payment_id, amount=notification.amount_minor, dispute=notification.dispute_id
        )
    if notification.type in (T.DISPUTE_WON, T.DISPUTE_LOST) and notification.dispute_id:
        async with runtime.unit_of_work.begin() as session:
            dispute = await PaymentRepository(session).dispute_by_provider_id(
                notification.dispute_id
            )
        if dispute is None:
            # Before its `dispute.opened` (providers do not promise order, and an opening
            # refused for a while is retried): retried until the dispute is open, then
            # failed on the schedule's last attempt if it never opens.
            raise DisputeNotOpenYetError(
                f"no dispute {notification.dispute_id[:64]!r} is open on this payment yet"
            )
        if dispute.payment_id != payment_id:
            # Resolved only through the payment it disputes: a dispute id is the provider's
            # word, checked like a reference, so another payment's (or provider's) dispute
            # is not decided by a message about this one.
            return "unknown_dispute"
        return await _resolve_dispute(runtime, dispute.id, won=notification.type is T.DISPUTE_WON)
    return "ignored_stale"


class FailureInFlightError(Exception):
    """A top-up's confirmation found its pending amount voided by a provider's failure not
    recorded yet (its notification being applied at that moment, or interrupted):
    retryable, so the retry finds the failure recorded (`_after_settling`)."""


_RELEASED = "ledger_pending_transfer_already_voided"
"""`settle_top_up`'s outcome when the ledger had voided the pending amount first."""

_POSTED = "ledger_pending_transfer_already_posted"
"""A failure's outcome when the ledger had posted the pending amount first."""

_AFTER_FAILURE = frozenset({"ignored_failed", _RELEASED})
_AFTER_SUCCESS = frozenset({"ignored_succeeded", _POSTED})
_CONTRADICTED: dict[NotificationType, frozenset[str]] = {
    T.CHARGE_SUCCEEDED: _AFTER_FAILURE,
    T.PAYOUT_SUCCEEDED: _AFTER_FAILURE,
    T.CHARGE_FAILED: _AFTER_SUCCESS,
    T.PAYOUT_FAILED: _AFTER_SUCCESS,
}
"""The outcomes by which a charge's or payout's outcome found the opposite one final:
paid out (or charged) after the payment failed and its money went back, or failed (a
returned payout, a reversed charge) after it was settled. The books keep their final
state, as for any late report, but the provider moved money they do not show: logged as
a warning (`payments.notification_contradicts_outcome`) for an operator to reconcile by
hand, where it was an info line like a duplicate's."""

_ANSWERS: dict[Kind, frozenset[NotificationType]] = {
    Kind.TOP_UP: frozenset({T.CHARGE_PENDING, T.CHARGE_SUCCEEDED, T.CHARGE_FAILED}),
    Kind.WITHDRAWAL: frozenset({T.PAYOUT_SUCCEEDED, T.PAYOUT_FAILED}),
}
"""The notifications that answer a provider's call for each kind of payment (and carry
the provider's reference for it)."""


async def _record_reference(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, provider_reference: str
) -> None:
    """Record the provider's reference a notification reports for a processing payment
    whose call timed out before the provider answered (none recorded). Otherwise a payment
    its notification finished kept none for good: nothing to find it by in the provider's
    statements, a trace or a return. Only while `processing`: one the provider was not
    asked about yet (held for review) takes the reference its own call answers."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.provider_reference is None and payment.state == State.PROCESSING.value:
            payment.provider_reference = provider_reference


async def _after_settling(
    runtime: PaymentsRuntime,
    notification: Notification,
    payment_id: uuid.UUID,
    outcome: str,
    provider: str,
) -> str:
    """What a confirmation that did not settle the top-up comes to. One for a top-up that
    recovery ended as abandoned (`AUTHENTICATION_ABANDONED`: the payer answered the
    challenge after all, so the provider took money the books released) changes nothing,
    as a mismatched notification does: logged as a warning
    (`payments.notification_after_abandonment`) for an operator to reconcile by hand
    (refund the payer at the provider, or credit the wallet), and processed
    (`ignored_abandoned`). Settling it instead would resurrect a failed payment and credit
    money the ledger already returned to the clearing account.

    The failure of an abandonment is recorded after its void: a confirmation that finds
    the amount voided by the abandonment (`abandonment_voided`) while the top-up is not
    failed yet (recovery recording it at that moment, or a crash in between) records it
    itself (`abandon_top_up`: the void answered `exists`, the failure recorded once), then
    is ignored as after any abandonment. Otherwise a crash there left the top-up
    `requires_action` for good and this notification retried until its schedule ended."""
    if outcome in ("applied", "ignored_succeeded"):
        return outcome
    if outcome == _RELEASED:
        await _finish_abandonment(runtime, payment_id)
    async with runtime.unit_of_work.read() as session:
        payment = await PaymentRepository(session).get(payment_id)
    assert payment is not None
    if payment.state == "failed" and payment.failure_code == AUTHENTICATION_ABANDONED:
        log.warning(
            "payments.notification_after_abandonment",
            provider=provider,
            event_id=notification.event_id,
            payment=payment_id.hex,
        )
        return "ignored_abandoned"
    if outcome == _RELEASED and payment.state != "failed":
        raise FailureInFlightError(
            "the top-up's pending amount was voided by a failure not recorded yet"
        )
    return outcome


async def _after_failing(runtime: PaymentsRuntime, payment_id: uuid.UUID, outcome: str) -> str:
    """A top-up's failure that found its pending amount voided already by an abandonment
    whose failure a crash left unrecorded: recorded now as the abandonment the ledger holds
    (as a success finds it, `_after_settling`), not left until a reconciliation comes by."""
    if outcome != _RELEASED:
        return outcome
    return await _finish_abandonment(runtime, payment_id) or outcome


async def _finish_abandonment(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str | None:
    """Record the failure of an abandonment whose void the ledger holds
    (`abandonment_voided`) on a top-up not failed yet (`abandon_top_up`: the void answers
    `exists`, the failure is recorded once); its outcome, or None if there is none."""
    async with runtime.unit_of_work.read() as session:
        payment = await PaymentRepository(session).get(payment_id)
    assert payment is not None
    if payment.state == "failed" or not await abandonment_voided(runtime, payment):
        return None
    return await abandon_top_up(runtime, payment_id)


async def _open_dispute(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, *, amount: int, dispute: str
) -> str:
    """Open the dispute the provider reports. A refusal that can never pass is rejected
    (the chargeback is the provider's, whatever the books say: an operator must look);
    one that may (the charge not settled yet, room an open dispute may give back, a hold
    the ledger refuses for a frozen wallet) is raised, to be retried."""
    try:
        outcome = await open_dispute(
            runtime,
            payment_id=payment_id,
            amount=amount,
            opened_by="provider",
            reason="provider",
            provider_dispute_id=dispute,
        )
    except (InvalidStateTransition, RefundExceedsCaptured) as refusal:
        why = await opening_refused_for_good(runtime, payment_id=payment_id, amount=amount)
        if why is None:
            raise
        raise PermanentInboundError(f"{refusal.code}: {why}") from refusal
    if outcome.startswith("ledger_"):
        # Recorded `opening`: recovery places the hold too once the refusal passes, and
        # this retry then finds it open (`duplicate`). Processed now, the notification said
        # the chargeback was applied while the books had not moved.
        raise DisputeLedgerRefusedError(
            f"the ledger refused the dispute's hold for now ({outcome.removeprefix('ledger_')})"
        )
    return outcome


async def _resolve_dispute(runtime: PaymentsRuntime, dispute_id: uuid.UUID, *, won: bool) -> str:
    """Resolve the dispute as the provider reports. Refused for good when the dispute took
    the other outcome; a dispute still opening (or a ledger refusal of a claimed outcome,
    which the claim keeps for a retry or recovery) is raised, to be retried."""
    try:
        return await resolve_dispute(runtime, dispute_id=dispute_id, won=won)
    except InvalidStateTransition as refusal:
        why = await resolution_refused_for_good(runtime, dispute_id=dispute_id, won=won)
        if why is None:
            raise
        raise PermanentInboundError(f"{refusal.code}: {why}") from refusal


_OUTCOMES = frozenset(
    {T.CHARGE_PENDING, T.CHARGE_SUCCEEDED, T.CHARGE_FAILED, T.PAYOUT_SUCCEEDED, T.PAYOUT_FAILED}
)
"""Types that report the outcome of the charge or payout itself: of its whole amount."""


def _describes(notification: Notification, payment: Payment) -> bool:
    """Whether the notification is about this payment's money: its currency always, and
    for a charge's or payout's outcome its amount. A report of another amount or currency
    is not this payment's (settling or releasing it would credit or return money the
    provider never moved), so it is left for an operator instead of applied."""
    if notification.currency != payment.currency:
        return False
    return notification.type not in _OUTCOMES or notification.amount_minor == payment.amount

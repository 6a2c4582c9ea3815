"""Every payment explains itself: its state history, its fees and the ledger transfers it
caused, read back from the ledger."""

from __future__ import annotations

import json

from billfold.fx.models import FxQuoteRow
from billfold.fx.service import get_quote
from billfold.kit.ids import format_id
from billfold.payments.flows.crossfx import leg_ids
from billfold.payments.models import Dispute, MoneyRequest, Payment, Refund
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.schemas import (
    DisputeResponse,
    FeeResponse,
    FxLegResponse,
    MoneyRequestResponse,
    PaymentResponse,
    RefundResponse,
    StateChangeResponse,
    TransferSummary,
)
from billfold.wallets.service import ledger_tenant_of

__all__ = ["dispute_response", "explain", "money_request_response", "refund_response"]


def _user(value: object) -> str | None:
    import uuid

    return format_id("usr", value) if isinstance(value, uuid.UUID) else None


async def explain(runtime: PaymentsRuntime, payment: Payment) -> PaymentResponse:
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        history = await repository.history(payment.id)
        fees = await repository.fees(payment.id)
        steps = await repository.transfers(payment.id)
        refunds = await repository.refunds(payment.id)
        disputes = await repository.disputes(payment.id)
        quote = None
        if payment.fx_quote_id is not None:
            quote = await get_quote(
                session,
                tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
                quote_id=payment.fx_quote_id,
            )
    transfers = await runtime.book.ledger.lookup_transfers(
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        ids=[step.transfer_id for step in steps],
    )
    by_id = {transfer.id: transfer for transfer in transfers}
    return PaymentResponse(
        id=format_id("pay", payment.id),
        kind=payment.kind,
        state=payment.state,
        amount=str(payment.amount),
        currency=payment.currency,
        captured_amount=str(payment.captured_amount),
        refunded_amount=str(payment.refunded_amount),
        merchant_id=format_id("mer", payment.merchant_id) if payment.merchant_id else None,
        # A payer authorizing is not shown before the hold is placed (any user of the
        # tenant may see a payment awaiting payment).
        payer=None if payment.state == "requires_payment" else _user(payment.payer_user_id),
        payee=_user(payment.payee_user_id),
        provider=payment.provider,
        method=payment.method,
        instrument_last4=payment.instrument,
        provider_reference=payment.provider_reference,
        reference=payment.reference,
        metadata=json.loads(payment.metadata_json) if payment.metadata_json else None,
        capture=payment.capture_mode,
        failure_code=payment.failure_code,
        risk_decision_id=None
        if payment.risk_decision_id is None
        else format_id("rdc", payment.risk_decision_id),
        next_action_url=payment.next_action_url,
        expires_at=None if payment.expires_at is None else str(payment.expires_at),
        authorization_expires_at=None
        if payment.authorization_expires_at is None
        else str(payment.authorization_expires_at),
        created_at=str(payment.created_at),
        fx=None if quote is None else _fx_leg(payment, quote),
        history=[
            StateChangeResponse(
                from_state=change.from_state,
                to_state=change.to_state,
                reason=change.reason,
                at=str(change.at),
            )
            for change in history
        ],
        fees=[
            FeeResponse(
                rule=fee.rule,
                description=fee.description,
                amount=str(fee.amount),
                currency=fee.currency,
                transfer_id=format_id("txf", fee.transfer_id),
            )
            for fee in fees
        ],
        transfers=[
            TransferSummary(
                id=format_id("txf", t.id),
                step=step.step,
                debit_account_id=format_id("acc", t.debit_account_id),
                credit_account_id=format_id("acc", t.credit_account_id),
                amount=str(t.amount),
                currency=t.ledger,
                code=t.code,
                flags=t.flags,
                pending_id=format_id("txf", t.pending_id) if t.pending_id else None,
                timestamp=str(t.timestamp),
            )
            for step in steps
            if (t := by_id.get(step.transfer_id)) is not None
        ],
        refunds=[refund_response(refund) for refund in refunds],
        disputes=[dispute_response(dispute) for dispute in disputes],
    )


def refund_response(refund: Refund) -> RefundResponse:
    return RefundResponse(
        id=format_id("ref", refund.id),
        payment_id=format_id("pay", refund.payment_id),
        amount=str(refund.amount),
        state=refund.state,
        reason=refund.reason,
        failure_code=refund.failure_code,
        fee_returned=str(refund.fee_returned),
        risk_decision_id=None
        if refund.risk_decision_id is None
        else format_id("rdc", refund.risk_decision_id),
    )


def _fx_leg(payment: Payment, quote: FxQuoteRow) -> FxLegResponse:
    sell_id, buy_id = leg_ids(quote.id)
    return FxLegResponse(
        quote_id=format_id("fxq", quote.id),
        source_currency=quote.sell_currency,
        source_amount=str(quote.sell_amount),
        currency=quote.buy_currency,
        amount=str(quote.buy_amount),
        rate=quote.rate,
        mid_rate=quote.mid_rate,
        spread_bps=quote.spread_bps,
        rates_date=quote.rates_date,
        sell_transfer_id=sell_id,
        buy_transfer_id=buy_id,
    )


def dispute_response(dispute: Dispute) -> DisputeResponse:
    return DisputeResponse(
        id=format_id("dsp", dispute.id),
        payment_id=format_id("pay", dispute.payment_id),
        amount=str(dispute.amount),
        held_amount=str(dispute.held_amount),
        state=dispute.state,
        opened_by=dispute.opened_by,
        reason=dispute.reason,
        evidence=json.loads(dispute.evidence_json),
    )


def money_request_response(request: MoneyRequest) -> MoneyRequestResponse:
    return MoneyRequestResponse(
        id=format_id("req", request.id),
        payer=format_id("usr", request.payer_user_id),
        payee=format_id("usr", request.payee_user_id),
        amount=str(request.amount),
        currency=request.currency,
        note=request.note,
        state=request.state,
        payment_id=format_id("pay", request.payment_id) if request.payment_id else None,
        expires_at=str(request.expires_at),
    )

"""P2P transfers between users of one tenant, and money requests.

A P2P payment is one linked chain: sender → recipient, then the fees from the sender.
A money request is approved by the payer (which makes the P2P payment), declined, or
expires; an expired request can no longer be approved."""

from __future__ import annotations

import uuid

from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import (
    InvalidStateTransition,
    MoneyRequestExpired,
    MoneyRequestNotFound,
    SelfPayment,
)
from billfold.payments.flows import crossfx
from billfold.payments.flows.common import (
    advance,
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
)
from billfold.payments.models import MoneyRequest, Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import (
    check_spending_limits,
    fee_transfers,
    find_recipient,
    quote_fees,
    record_created,
    record_fees,
    require_step_up,
)
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.wallets.accounts import OwnerKind, TransferCode
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "approve_request",
    "create_request",
    "decline_request",
    "drive_p2p",
    "send_p2p",
]


async def send_p2p(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    sender_id: uuid.UUID,
    recipient: str,
    amount: int,
    currency: str,
    step_up_token: str | None = None,
    source_currency: str | None = None,
    quote_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Send `amount` of `currency` to `recipient`; from the sender's `source_currency`
    wallet through FX (with `quote_id`, or a quote made now) when that differs."""
    async with runtime.unit_of_work.begin() as session:
        payee = await find_recipient(session, tenant_id=tenant_id, mode=mode, recipient=recipient)
    if payee.id == sender_id:
        raise SelfPayment("You cannot send money to yourself.")
    await require_step_up(
        runtime.unit_of_work,
        threshold_minor=runtime.step_up_threshold_minor,
        user_id=sender_id,
        token=step_up_token,
        amount=amount,
        currency=currency,
        payee=format_id("usr", payee.id),
    )
    return await _pay(
        runtime,
        tenant_id=tenant_id,
        mode=mode,
        sender_id=sender_id,
        payee_id=payee.id,
        amount=amount,
        currency=currency,
        cross=crossfx.CrossCurrency(source_currency, quote_id),
    )


async def _pay(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    sender_id: uuid.UUID,
    payee_id: uuid.UUID,
    amount: int,
    currency: str,
    cross: crossfx.CrossCurrency | None = None,
) -> uuid.UUID:
    book = runtime.book
    ledger_tenant = ledger_tenant_of(tenant_id, mode)
    source_currency = None
    if cross is not None and crossfx.wanted(cross.source_currency, cross.quote_id, currency):
        async with runtime.unit_of_work.begin() as session:
            source_currency = await crossfx.source_currency_of(
                session, ledger_tenant=ledger_tenant, choice=cross
            )
    source_wallet = None
    if source_currency is not None:
        source_wallet = await book.open_wallet(
            tenant_id=tenant_id,
            mode=mode,
            owner_kind=OwnerKind.USER,
            owner_id=sender_id,
            currency=source_currency,
        )
    source = await book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.USER,
        owner_id=sender_id,
        currency=currency,
    )
    target = await book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.USER,
        owner_id=payee_id,
        currency=currency,
    )
    async with runtime.unit_of_work.begin() as session:
        spent_at = await check_spending_limits(
            session, user_id=sender_id, currency=currency, amount=amount
        )
        now = now_ns()
        payment = Payment(
            id=new_id(),
            tenant_id=tenant_id,
            mode=mode.value,
            kind=Kind.P2P.value,
            state=State.CREATED.value,
            amount=amount,
            currency=currency,
            captured_amount=0,
            refunded_amount=0,
            payer_user_id=sender_id,
            payee_user_id=payee_id,
            debit_account_id=source,
            credit_account_id=target,
            method="p2p",
            capture_mode="automatic",
            spent_at=spent_at,
            created_at=now,
            updated_at=now,
        )
        if source_currency is not None and source_wallet is not None and cross is not None:
            # The quote buys the amount and the fees, into the sender's own wallet.
            fees = await quote_fees(
                session, runtime.fee_quoter, payment=payment, method="p2p", amount=amount
            )
            quote = await crossfx.lock_quote(
                session,
                runtime,
                ledger_tenant=ledger_tenant,
                quote_id=cross.quote_id,
                source_currency=source_currency,
                currency=currency,
                buy_amount=amount + fees.total_minor,
                sell_account_id=source_wallet,
                buy_account_id=source,
                now_ns=now,
            )
            payment.source_currency, payment.source_amount = source_currency, quote.sell_amount
            payment.fx_quote_id = quote.id
        await record_created(session, payment)
    return await drive_p2p(runtime, payment.id)


async def drive_p2p(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> uuid.UUID:
    """Move a created P2P payment's money and record the outcome. Safe to call again after
    a crash at any point: the transfers' ids are the payment's, so the ledger answers
    `exists` for what it already applied, and a settled payment is left as it is."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if payment.state != State.CREATED.value:
            return payment_id
        quote = await quote_fees(
            session, runtime.fee_quoter, payment=payment, method="p2p", amount=payment.amount
        )
        ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
        fx_quote = None
        if payment.fx_quote_id is not None:
            fx_quote = await crossfx.reserved_quote(
                session, ledger_tenant=ledger_tenant, quote_id=payment.fx_quote_id
            )
    if payment.debit_account_id is None or payment.credit_account_id is None:
        raise InvariantViolation("a P2P payment has both accounts")
    conversion = [] if fx_quote is None else await crossfx.fx_steps(runtime, fx_quote)
    move = NewTransfer(
        id=step_id(payment_id, "transfer"),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        debit_account_id=payment.debit_account_id,
        credit_account_id=payment.credit_account_id,
        amount=payment.amount,
        ledger=payment.currency,
        code=int(TransferCode.P2P),
        user_data=format_id("pay", payment_id),
    )
    fees = fee_transfers(
        payment, quote, stage="transfer", payer_account_id=payment.debit_account_id
    )
    steps = chain([*conversion, ("transfer", move), *fees])
    results = await apply_steps(runtime, payment_id, steps)
    give_back = (
        fx_quote is not None
        and not applied(results)
        and not await crossfx.legs_recorded(runtime, fx_quote.id, ledger_tenant)
    )
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment_id)
        if applied(results):
            stored.captured_amount = stored.amount
            await record_fees(session, stored, quote, stage="transfer")
            await advance(session, stored, State.SUCCEEDED, reason="ledger_applied")
        else:
            stored.failure_code = str(failure(results))[:64]
            changed = await advance(session, stored, State.FAILED, reason=stored.failure_code)
            if changed and give_back and fx_quote is not None:
                await crossfx.release(session, ledger_tenant=ledger_tenant, quote_id=fx_quote.id)
    if not applied(results):
        raise_for(failure(results))
    return payment_id


async def create_request(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    payee_id: uuid.UUID,
    payer: str,
    amount: int,
    currency: str,
    note: str | None,
    expires_in_s: int,
) -> MoneyRequest:
    async with runtime.unit_of_work.begin() as session:
        user = await find_recipient(session, tenant_id=tenant_id, mode=mode, recipient=payer)
        if user.id == payee_id:
            raise SelfPayment("You cannot ask yourself for money.")
        now = now_ns()
        request = MoneyRequest(
            id=new_id(),
            tenant_id=tenant_id,
            mode=mode.value,
            payee_user_id=payee_id,
            payer_user_id=user.id,
            amount=amount,
            currency=currency,
            note=note,
            state="pending",
            payment_id=None,
            expires_at=now + expires_in_s * 1_000_000_000,
            created_at=now,
        )
        await PaymentRepository(session).add(request)
    return request


async def _claim(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    request_id: uuid.UUID,
    to_state: str,
) -> MoneyRequest:
    """Move a pending request the user must answer to `to_state` (expired ones expire)."""
    async with runtime.unit_of_work.begin() as session:
        request = await PaymentRepository(session).get_request(request_id)
        if (
            request is None
            or request.tenant_id != tenant_id
            or request.mode != mode.value
            or user_id not in (request.payer_user_id, request.payee_user_id)
        ):
            raise MoneyRequestNotFound("No such money request.")
        if request.payer_user_id != user_id:
            raise InvalidStateTransition("Only the payer answers a money request.")
        if request.state == "pending" and request.expires_at <= now_ns():
            request.state = "expired"
        elif request.state == "pending":
            request.state = to_state
            return request
    if request.state == "expired":
        raise MoneyRequestExpired("The money request expired.")
    raise InvalidStateTransition(f"The money request is {request.state}.", state=request.state)


async def approve_request(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    request_id: uuid.UUID,
    source_currency: str | None = None,
    quote_id: uuid.UUID | None = None,
) -> MoneyRequest:
    """Pay the request (from the payer's `source_currency` wallet through FX when it
    differs from the request's currency, as `send_p2p`)."""
    request = await _claim(
        runtime,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        request_id=request_id,
        to_state="approved",
    )
    try:
        payment_id = await _pay(
            runtime,
            tenant_id=tenant_id,
            mode=mode,
            sender_id=user_id,
            payee_id=request.payee_user_id,
            amount=request.amount,
            currency=request.currency,
            cross=crossfx.CrossCurrency(source_currency, quote_id),
        )
    except Exception:
        async with runtime.unit_of_work.begin() as session:
            row = await PaymentRepository(session).get_request(request_id)
            if row is not None and row.state == "approved" and row.payment_id is None:
                row.state = "pending"  # not paid: the payer may try again
        raise
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_request(request_id)
        assert row is not None
        row.payment_id = payment_id
        return row


async def decline_request(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    request_id: uuid.UUID,
) -> MoneyRequest:
    return await _claim(
        runtime,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        request_id=request_id,
        to_state="declined",
    )

"""P2P transfers between users of one tenant, and money requests.

A P2P payment is one linked chain: sender → recipient, then the fees from the sender.
A money request is approved by the payer (which makes the P2P payment), declined, or
expires; an expired request can no longer be approved."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer, TransferFlags
from billfold.payments.errors import (
    InvalidStateTransition,
    MoneyRequestExpired,
    MoneyRequestNotFound,
    SelfPayment,
)
from billfold.payments.flows import crossfx, gate
from billfold.payments.flows.common import (
    advance,
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
)
from billfold.payments.models import MoneyRequest, Payment, PaymentFee
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import (
    FEE_LINES_MAX,
    charged_lines,
    check_spending_limits,
    fee_transfers,
    find_recipient,
    quote_fees,
    record_created,
    record_fees,
    recorded_fees,
    recorded_quote,
    require_step_up,
)
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.gate import RiskContext, Verdict
from billfold.risk.types import Action, MovementKind
from billfold.wallets.accounts import OwnerKind, SystemRole, TransferCode, system_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "HELD_FEE_LINES_MAX",
    "NO_CONTEXT",
    "approve_request",
    "create_request",
    "decline_request",
    "drive_p2p",
    "held_chain",
    "held_fees",
    "hold_p2p",
    "send_p2p",
]

NO_CONTEXT = RiskContext()
_TRANSFER = "transfer"
HELD_FEE_LINES_MAX = FEE_LINES_MAX
"""At most this many fee lines are held with a payment in review (every quote's bound)."""


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
    context: RiskContext = NO_CONTEXT,
) -> uuid.UUID:
    """Send `amount` of `currency` to `recipient`; from the sender's `source_currency`
    wallet through FX (with `quote_id`, or a quote made now) when that differs. The risk
    decision may challenge, block or hold it (`billfold.payments.flows.gate`)."""
    async with runtime.unit_of_work.begin() as session:
        payee = await find_recipient(session, tenant_id=tenant_id, mode=mode, recipient=recipient)
    if payee.id == sender_id:
        raise SelfPayment("You cannot send money to yourself.")
    verified = await require_step_up(
        runtime.unit_of_work,
        threshold_minor=runtime.step_up_threshold_minor,
        user_id=sender_id,
        token=step_up_token if step_up_token is not None else context.step_up_token,
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
        context=context,
        step_up_verified=verified,
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
    context: RiskContext = NO_CONTEXT,
    step_up_verified: bool = False,
    request_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Record the payment and move its money. `request_id`: the money request it pays,
    linked to the payment in the transaction that records it, so that once the payment
    exists (it may still complete, by recovery after a crash) the request is never paid
    by another."""
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
    payment_id = new_id()
    async with runtime.unit_of_work.begin() as session:
        spent_at = await check_spending_limits(
            session,
            tenant_id=tenant_id,
            mode=mode,
            user_id=sender_id,
            currency=currency,
            amount=amount,
        )
        now = now_ns()
        verdict = await gate.decide(
            session,
            runtime,
            gate.movement(
                tenant_id=tenant_id,
                mode=mode,
                kind=MovementKind.P2P,
                amount=amount,
                currency=currency,
                at_ns=now,
                user_id=sender_id,
                payee=format_id("usr", payee_id),
                reference=format_id("pay", payment_id),
                context=context,
                step_up_verified=step_up_verified,
            ),
            challengeable=True,
        )
        payment = Payment(
            id=payment_id,
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
        if verdict.action is Action.CHALLENGE:
            pass  # only the decision is stored; raised once it committed
        elif verdict.action is Action.BLOCK:
            await record_created(session, payment)
            await gate.enter_outcome(session, runtime, payment, verdict)
        else:
            await _record(session, runtime, payment, verdict, cross, source_currency, source_wallet)
        if request_id is not None and verdict.action is not Action.CHALLENGE:
            request = await PaymentRepository(session).get_request(request_id, for_update=True)
            if request is not None:
                request.payment_id = payment_id
    if verdict.action is Action.CHALLENGE:
        raise gate.challenge_error(verdict, step_up_payee=format_id("usr", payee_id))
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    if verdict.action is Action.REVIEW:
        return await hold_p2p(runtime, payment.id)
    return await drive_p2p(runtime, payment.id)


async def _record(
    session: AsyncSession,
    runtime: PaymentsRuntime,
    payment: Payment,
    verdict: Verdict,
    cross: crossfx.CrossCurrency | None,
    source_currency: str | None,
    source_wallet: uuid.UUID | None,
) -> None:
    """Record an allowed or held P2P payment (with its locked FX quote, if any) and its
    fees, priced now: a held one's (`hold:fee:<n>`), so its hold is the same chain whenever
    it is placed; an allowed one's (`transfer:fee:<n>`), so the chain `drive_p2p` submits
    (again, after a crash) is the same whatever the schedule or the monthly volume says by
    then, and the ledger answers it `exists`."""
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    amount, currency, source, now = (
        payment.amount,
        payment.currency,
        payment.debit_account_id,
        payment.created_at,
    )
    assert source is not None
    fees = await quote_fees(
        session, runtime.fee_quoter, payment=payment, method="p2p", amount=amount
    )
    if source_currency is not None and source_wallet is not None and cross is not None:
        # The quote buys the amount and the fees, into the sender's own wallet.
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
    await gate.enter_outcome(session, runtime, payment, verdict)
    if verdict.action is Action.ALLOW:
        await record_fees(session, payment, charged_lines(fees), stage=_TRANSFER)
    if verdict.action is Action.REVIEW:
        if len([line for line in fees.lines if line.amount_minor]) > HELD_FEE_LINES_MAX:
            raise InvariantViolation("a held P2P payment holds at most HELD_FEE_LINES_MAX fees")
        await record_fees(session, payment, fees, stage="hold")


async def held_chain(runtime: PaymentsRuntime, payment: Payment) -> list[tuple[str, NewTransfer]]:
    """The transfers that hold a P2P payment in review, made only from what was recorded
    when it was decided (so placing the hold again is answered `exists`): any conversion
    (posted: the sender's own money changes currency), then sender → recipient and the
    fees, pending."""
    if payment.debit_account_id is None or payment.credit_account_id is None:
        raise InvariantViolation("a P2P payment has both accounts")
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    async with runtime.unit_of_work.begin() as session:
        fees = await PaymentRepository(session).fees(payment.id)
        fx_quote = None
        if payment.fx_quote_id is not None:
            fx_quote = await crossfx.reserved_quote(
                session, ledger_tenant=ledger_tenant, quote_id=payment.fx_quote_id
            )
    conversion = [] if fx_quote is None else await crossfx.fx_steps(runtime, fx_quote)
    hold = NewTransfer(
        id=step_id(payment.id, "hold"),
        tenant_id=ledger_tenant,
        debit_account_id=payment.debit_account_id,
        credit_account_id=payment.credit_account_id,
        amount=payment.amount,
        ledger=payment.currency,
        code=int(TransferCode.P2P),
        flags=int(TransferFlags.PENDING),
        user_data=format_id("pay", payment.id),
    )
    return [*conversion, ("hold", hold), *held_fees(payment, fees, payment.debit_account_id)]


def held_fees(
    payment: Payment, fees: list[PaymentFee], payer_account_id: uuid.UUID
) -> list[tuple[str, NewTransfer]]:
    """The pending fee transfers of recorded `hold` fee lines (steps `hold:fee:<index>`)."""
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    revenue = system_account_id(
        ledger_tenant, name=SystemRole.FEE_REVENUE.value, currency=payment.currency
    )
    steps = []
    # In the quote's order, as when the hold was first placed (a linked chain re-placed
    # must be the same transfers with the same flags to be answered `exists`).
    for index, fee in recorded_fees(payment, fees, stage="hold", count=HELD_FEE_LINES_MAX):
        if fee.amount <= 0:
            continue
        steps.append(
            (
                f"hold:fee:{index}",
                NewTransfer(
                    id=fee.transfer_id,
                    tenant_id=ledger_tenant,
                    debit_account_id=payer_account_id,
                    credit_account_id=revenue,
                    amount=fee.amount,
                    ledger=payment.currency,
                    code=int(TransferCode.FEE),
                    flags=int(TransferFlags.PENDING),
                    user_data=f"pay_{payment.id.hex}",
                ),
            )
        )
    return steps


async def hold_p2p(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> uuid.UUID:
    """Place (or place again: idempotent) the pending transfers of a P2P payment held for
    review. Refused by the ledger (funds), the payment fails and its case closes."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    if payment.state != State.IN_REVIEW.value:
        return payment_id
    steps = chain(await held_chain(runtime, payment))
    results = await apply_steps(runtime, payment_id, steps)
    if applied(results):
        return payment_id
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    give_back = payment.fx_quote_id is not None and not await crossfx.legs_recorded(
        runtime, payment.fx_quote_id, ledger_tenant
    )
    async with runtime.unit_of_work.begin() as session:
        stored = await load(session, payment_id)
        stored.failure_code = str(failure(results))[:64]
        changed = await advance(session, stored, State.FAILED, reason=stored.failure_code)
        if changed:
            await gate.close_review(
                session, stored, reference=format_id("pay", payment_id), at_ns=now_ns()
            )
        if changed and give_back and stored.fx_quote_id is not None:
            await crossfx.release(session, ledger_tenant=ledger_tenant, quote_id=stored.fx_quote_id)
    raise_for(failure(results))
    return payment_id


async def drive_p2p(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> uuid.UUID:
    """Move a created P2P payment's money and record the outcome. Safe to call again after
    a crash at any point: the transfers' ids are the payment's and its fees those recorded
    when it was made, so the ledger answers `exists` for what it already applied, and a
    settled payment is left as it is."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if payment.state != State.CREATED.value:
            return payment_id
        quote = recorded_quote(
            payment, await PaymentRepository(session).fees(payment_id), stage=_TRANSFER
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
    fees = fee_transfers(payment, quote, stage=_TRANSFER, payer_account_id=payment.debit_account_id)
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
            await record_fees(session, stored, quote, stage=_TRANSFER)
            await advance(session, stored, State.SUCCEEDED, reason="ledger_applied")
        else:
            stored.failure_code = str(failure(results))[:64]
            changed = await advance(session, stored, State.FAILED, reason=stored.failure_code)
            if changed:  # nothing was charged: no fee lines
                await PaymentRepository(session).delete_fees(
                    payment_id, [transfer.id for _, transfer in fees]
                )
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
    """Move a pending request the user must answer to `to_state` (expired ones expire).
    The row is locked: of concurrent answers, only the first finds it pending."""
    async with runtime.unit_of_work.begin() as session:
        request = await PaymentRepository(session).get_request(request_id, for_update=True)
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
    context: RiskContext = NO_CONTEXT,
) -> MoneyRequest:
    """Pay the request (from the payer's `source_currency` wallet through FX when it
    differs from the request's currency, as `send_p2p`), past the risk decision as
    `send_p2p`; a challenged, blocked or refused attempt leaves the request pending."""
    request = await _claim(
        runtime,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        request_id=request_id,
        to_state="approved",
    )
    try:
        verified = await require_step_up(
            runtime.unit_of_work,
            threshold_minor=None,
            user_id=user_id,
            token=context.step_up_token,
            amount=request.amount,
            currency=request.currency,
            payee=format_id("usr", request.payee_user_id),
        )
        payment_id = await _pay(
            runtime,
            tenant_id=tenant_id,
            mode=mode,
            sender_id=user_id,
            payee_id=request.payee_user_id,
            amount=request.amount,
            currency=request.currency,
            cross=crossfx.CrossCurrency(source_currency, quote_id),
            context=context,
            step_up_verified=verified,
            request_id=request_id,
        )
    except Exception:
        async with runtime.unit_of_work.begin() as session:
            repository = PaymentRepository(session)
            row = await repository.get_request(request_id, for_update=True)
            if row is not None and row.state == "approved":
                paying = None if row.payment_id is None else await repository.get(row.payment_id)
                # Not paid (no payment, or one that failed): the payer may try again. A
                # payment still under way (a crash mid-flight: recovery finishes it) keeps
                # the request approved, so it is never paid twice.
                if paying is None or paying.state == State.FAILED.value:
                    row.state, row.payment_id = "pending", None
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

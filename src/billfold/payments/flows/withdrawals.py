"""Withdrawal (payout) to a card or bank account.

The amount and its fees are held (pending transfers from the wallet, one linked chain)
before the provider is asked; its confirmation posts the holds, its failure voids them.
"""

from __future__ import annotations

import asyncio
import uuid

from billfold.connectors.types import PayoutRequest, ProviderStatus, ProviderTimeout
from billfold.identity.types import Mode
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer, TransferFlags
from billfold.payments.flows import gate
from billfold.payments.flows.common import (
    advance,
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
    release_holds,
)
from billfold.payments.models import Payment, PaymentFee
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import (
    FEE_LINES_MAX,
    check_spending_limits,
    fee_transfers,
    quote_fees,
    record_created,
    record_fees,
    require_step_up,
)
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.gate import RiskContext
from billfold.risk.types import Action, MovementKind
from billfold.wallets.accounts import OwnerKind, TransferCode, clearing_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "FEE_LINES_MAX",
    "finish_withdrawal",
    "payee_of",
    "request_payout",
    "resume_withdrawal",
    "start_withdrawal",
]


NO_CONTEXT = RiskContext()


async def start_withdrawal(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    method: str,
    destination: str,
    step_up_token: str | None = None,
    context: RiskContext = NO_CONTEXT,
) -> uuid.UUID:
    """Hold the amount and fees, then ask the provider for the payout; past the risk
    decision first (`billfold.payments.flows.gate`): a held withdrawal keeps its holds
    and asks the provider only once approved (`billfold.payments.flows.review`)."""
    provider_name = runtime.provider_for(method, mode)
    verified = await require_step_up(
        runtime.unit_of_work,
        threshold_minor=runtime.step_up_threshold_minor,
        user_id=user_id,
        token=step_up_token if step_up_token is not None else context.step_up_token,
        amount=amount,
        currency=currency,
        payee=payee_of(method, destination),
    )
    wallet = await runtime.book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.USER,
        owner_id=user_id,
        currency=currency,
    )
    ledger_tenant = ledger_tenant_of(tenant_id, mode)
    clearing = clearing_account_id(ledger_tenant, provider=provider_name, currency=currency)
    payment_id = new_id()
    async with runtime.unit_of_work.begin() as session:
        spent_at = await check_spending_limits(
            session,
            tenant_id=tenant_id,
            mode=mode,
            user_id=user_id,
            currency=currency,
            amount=amount,
        )
        now = now_ns()
        payment = Payment(
            id=payment_id,
            tenant_id=tenant_id,
            mode=mode.value,
            kind=Kind.WITHDRAWAL.value,
            state=State.CREATED.value,
            amount=amount,
            currency=currency,
            captured_amount=0,
            refunded_amount=0,
            payer_user_id=user_id,
            debit_account_id=wallet,
            credit_account_id=clearing,
            provider=provider_name,
            method=method,
            instrument=destination[-4:],
            capture_mode="automatic",
            spent_at=spent_at,
            created_at=now,
            updated_at=now,
        )
        verdict = await gate.decide(
            session,
            runtime,
            gate.movement(
                tenant_id=tenant_id,
                mode=mode,
                kind=MovementKind.WITHDRAWAL,
                amount=amount,
                currency=currency,
                at_ns=now,
                user_id=user_id,
                payee=f"provider:{provider_name}",
                reference=format_id("pay", payment_id),
                context=context,
                step_up_verified=verified,
            ),
            challengeable=True,
        )
        if verdict.action is not Action.CHALLENGE:  # a challenge stores only the decision
            await record_created(session, payment)
        if verdict.action is Action.BLOCK:
            await gate.enter_outcome(session, runtime, payment, verdict)
        elif verdict.action is not Action.CHALLENGE:
            quote = await quote_fees(
                session, runtime.fee_quoter, payment=payment, method="payout", amount=amount
            )
            await gate.enter_outcome(session, runtime, payment, verdict)
            if verdict.action is Action.REVIEW:
                # Recorded now, so the holds are the same chain whenever they are placed.
                await record_fees(session, payment, quote, stage="hold")
                await gate.seal_instrument(session, runtime, payment, destination)
    if verdict.action is Action.CHALLENGE:
        raise gate.challenge_error(verdict, step_up_payee=payee_of(method, destination))
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    hold = NewTransfer(
        id=step_id(payment_id, "hold"),
        tenant_id=ledger_tenant,
        debit_account_id=wallet,
        credit_account_id=clearing,
        amount=amount,
        ledger=currency,
        code=int(TransferCode.WITHDRAWAL),
        flags=int(TransferFlags.PENDING),
        user_data=format_id("pay", payment_id),
    )
    fees = fee_transfers(
        payment, quote, stage="hold", payer_account_id=wallet, flags=int(TransferFlags.PENDING)
    )
    if len(fees) > FEE_LINES_MAX:
        raise InvariantViolation("a withdrawal holds at most FEE_LINES_MAX fees")
    results = await apply_steps(runtime, payment_id, chain([("hold", hold), *fees]))
    if not applied(results):
        async with runtime.unit_of_work.begin() as session:
            payment = await load(session, payment_id)
            payment.failure_code = str(failure(results))[:64]
            payment.parked_instrument = None
            if await advance(session, payment, State.FAILED, reason="ledger_refused"):
                await gate.close_review(
                    session, payment, reference=format_id("pay", payment_id), at_ns=now_ns()
                )
        raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        await record_fees(session, payment, quote, stage="hold")
        if payment.state == State.IN_REVIEW.value:
            return payment_id  # held: the payout waits for the analyst
        await advance(session, payment, State.PROCESSING, reason="held")
    await request_payout(runtime, payment_id, destination)
    return payment_id


async def request_payout(runtime: PaymentsRuntime, payment_id: uuid.UUID, destination: str) -> None:
    """Ask the provider for a processing withdrawal's payout (the payment id is its
    idempotency key) and record its reference."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    provider_name, amount, currency = payment.provider, payment.amount, payment.currency
    assert provider_name is not None
    request = PayoutRequest(
        reference=format_id("pay", payment_id),
        amount_minor=amount,
        currency=currency,
        destination=destination,
    )
    try:
        response = await asyncio.wait_for(
            runtime.provider(provider_name).payout(request), runtime.provider_timeout_s
        )
    except (ProviderTimeout, TimeoutError):
        return  # the notification decides; the money stays held meanwhile
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        payment.provider_reference = response.provider_reference


async def finish_withdrawal(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, *, succeeded: bool, reason: str
) -> str:
    """Post (succeeded) or void (failed) the holds; idempotent, late reports ignored."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if payment.state != State.PROCESSING.value:
            return f"ignored_{payment.state}"
        fees = await PaymentRepository(session).fees(payment_id)
    outcome = "post" if succeeded else "void"
    flag = TransferFlags.POST_PENDING if succeeded else TransferFlags.VOID_PENDING
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    pending_ids = [("hold", step_id(payment_id, "hold"))]
    pending_ids += [(_step_of(payment_id, fee), fee.transfer_id) for fee in fees]
    steps = [
        (
            f"{step}:{outcome}",
            NewTransfer(
                id=step_id(payment_id, f"{step}:{outcome}"),
                tenant_id=ledger_tenant,
                pending_id=pending_id,
                flags=int(flag),
                user_data=format_id("pay", payment_id),
            ),
        )
        for step, pending_id in pending_ids
    ]
    results = await apply_steps(runtime, payment_id, chain(steps))
    if not applied(results):
        return f"ledger_{failure(results)}"
    async with runtime.unit_of_work.begin() as session:
        # Locked: a report racing this one (the notification and recovery's status query
        # at once) waits, then finds it finished and records nothing twice.
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.PROCESSING.value:
            return f"ignored_{payment.state}"  # recorded meanwhile: its failure code stays
        if succeeded:
            payment.captured_amount = payment.amount
        else:
            payment.failure_code = reason[:64]
        await advance(
            session, payment, State.SUCCEEDED if succeeded else State.FAILED, reason=reason
        )
    return "applied"


async def resume_withdrawal(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """Finish a withdrawal a crash left before the provider answered. Still `created`:
    the payout was never asked for (it is asked once the holds are recorded), so whatever
    holds the ledger has are voided and it fails (`interrupted`). `processing` without a
    provider reference: the provider's status for the payment id (its idempotency key)
    says whether the payout reached it; if it did, its reference and any final outcome
    are recorded; if not, the payout cannot be sent again (Billfold keeps only the last
    four characters of the destination), so the holds are voided and it fails.
    Idempotent; what happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    provider = payment.provider
    if payment.kind != Kind.WITHDRAWAL.value or provider is None:
        return f"ignored_{payment.kind}"
    if payment.state == State.CREATED.value:
        steps = ["hold", *(f"hold:fee:{index}" for index in range(FEE_LINES_MAX))]
        if not await release_holds(runtime, payment, steps):
            return "ignored_posted"
        async with runtime.unit_of_work.begin() as session:
            payment = await load(session, payment_id)
            payment.failure_code = "interrupted"
            await advance(session, payment, State.FAILED, reason="interrupted")
        return "failed_interrupted"
    if payment.state != State.PROCESSING.value or payment.provider_reference is not None:
        return f"ignored_{payment.state}"
    try:
        response = await asyncio.wait_for(
            runtime.provider(provider).status(format_id("pay", payment_id)),
            runtime.provider_timeout_s,
        )
    except (ProviderTimeout, TimeoutError):
        return "provider_unavailable"  # asked again next round
    if response is None:
        await finish_withdrawal(runtime, payment_id, succeeded=False, reason="interrupted")
        return "failed_interrupted"
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        payment.provider_reference = response.provider_reference
    if response.status in (ProviderStatus.SUCCEEDED, ProviderStatus.FAILED):
        succeeded = response.status is ProviderStatus.SUCCEEDED
        reason = "provider_status" if succeeded else response.failure_code or "payout_failed"
        await finish_withdrawal(runtime, payment_id, succeeded=succeeded, reason=reason)
    return f"resumed_{response.status.value}"


def _step_of(payment_id: uuid.UUID, fee: PaymentFee) -> str:
    return f"fee:{fee.transfer_id.hex[:8]}"


def payee_of(method: str, destination: str) -> str:
    """The payee a withdrawal's step-up token is bound to: `iban:…` or `card:…`."""
    return f"{'iban' if method == 'bank_transfer' else 'card'}:{destination}"

"""Top-up: money from a card or bank transfer into a user's wallet.

1. The payment is created and the amount appears as *pending* in the wallet: a pending
   transfer from the provider's clearing account (step `hold`).
2. The provider is charged with the payment id as its idempotency key.
3. On its confirmation the pending transfer is posted, linked with the fee transfers
   (`settle`); on failure it is voided (`void`), or, when recovery ends a 3-D Secure
   challenge its payer abandoned, by the abandonment's own void (`abandon`). All are
   idempotent.
"""

from __future__ import annotations

import asyncio
import uuid

from billfold.connectors.types import (
    ChargeRequest,
    ProviderResponse,
    ProviderStatus,
    ProviderTimeout,
)
from billfold.identity.types import Mode
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
from billfold.payments.models import Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import (
    charged_lines,
    fee_transfers,
    quote_fees,
    record_created,
    record_fees,
    recorded_fees,
    recorded_quote,
    require_step_up,
)
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.gate import RiskContext
from billfold.risk.types import Action, MovementKind
from billfold.wallets.accounts import (
    OwnerKind,
    TransferCode,
    clearing_account_id,
    wallet_account_id,
)
from billfold.wallets.service import currency_exponent, ledger_tenant_of

__all__ = [
    "ABANDON",
    "AUTHENTICATION_ABANDONED",
    "abandon_top_up",
    "abandonment_voided",
    "fail_top_up",
    "place_and_charge",
    "resume_top_up",
    "settle_top_up",
    "start_top_up",
]

_SETTLE = "settle"
"""The settlement's step, and its fee lines' (`settle:fee:<n>`)."""
NO_CONTEXT = RiskContext()
AUTHENTICATION_ABANDONED = "authentication_abandoned"
"""The `failure_code` of a top-up whose payer left its 3-D Secure challenge unanswered
past the runtime's `action_timeout_s` (recovery ends it: `reconcile_outcome`)."""
ABANDON = "abandon"
"""The step of the void that ends an abandoned challenge (`abandon_top_up`): its own
transfer id, not the provider failure's `void`, so the ledger tells which ended the hold."""


async def start_top_up(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    method: str,
    instrument: str,
    context: RiskContext = NO_CONTEXT,
) -> uuid.UUID:
    """Hold the amount as pending in the wallet, then charge the provider; past the risk
    decision first (`billfold.payments.flows.gate`): a top-up held for review is parked
    before anything moves — no hold, no charge — until approved (`flows.review`)."""
    provider_name = runtime.provider_for(method, mode)
    ledger_tenant = ledger_tenant_of(tenant_id, mode)
    clearing = clearing_account_id(ledger_tenant, provider=provider_name, currency=currency)
    payment_id = new_id()
    currency_exponent(currency)  # `unsupported_currency` before anything is priced
    wallet = wallet_account_id(
        ledger_tenant, owner_kind=OwnerKind.USER, owner_id=user_id, currency=currency
    )
    payment = _new_payment(
        payment_id,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        amount=amount,
        currency=currency,
        method=method,
        provider=provider_name,
        instrument=instrument,
        debit=clearing,
        credit=wallet,
    )
    async with runtime.unit_of_work.read() as session:
        # Fees that would take the whole amount are refused now, before the provider is
        # charged: at settlement the money is already taken and could not be credited.
        await quote_fees(session, runtime.fee_quoter, payment=payment, method=method, amount=amount)
    verified = await require_step_up(
        runtime.unit_of_work,
        threshold_minor=None,
        user_id=user_id,
        token=context.step_up_token,
        amount=amount,
        currency=currency,
        payee=f"provider:{provider_name}",
    )
    await runtime.book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.USER,
        owner_id=user_id,
        currency=currency,
    )
    async with runtime.unit_of_work.begin() as session:
        verdict = await gate.decide(
            session,
            runtime,
            gate.movement(
                tenant_id=tenant_id,
                mode=mode,
                kind=MovementKind.TOP_UP,
                amount=amount,
                currency=currency,
                at_ns=payment.created_at,
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
            await gate.enter_outcome(session, runtime, payment, verdict)
        if verdict.action is Action.REVIEW:
            await gate.seal_instrument(session, runtime, payment, instrument)
    if verdict.action is Action.CHALLENGE:
        raise gate.challenge_error(verdict, step_up_payee=f"provider:{provider_name}")
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    if verdict.action is Action.REVIEW:
        return payment_id  # parked: nothing moves until an analyst approves
    await place_and_charge(runtime, payment_id, instrument)
    return payment_id


async def place_and_charge(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, instrument: str
) -> None:
    """Hold the top-up as pending in the wallet, then charge the provider (a retry is
    answered `exists` by the ledger and by the provider's idempotency on the payment id)."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    provider_name, amount, currency = payment.provider, payment.amount, payment.currency
    method = payment.method or "card"
    assert provider_name is not None
    assert payment.debit_account_id is not None
    assert payment.credit_account_id is not None
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    clearing, wallet = payment.debit_account_id, payment.credit_account_id
    hold = NewTransfer(
        id=step_id(payment_id, "hold"),
        tenant_id=ledger_tenant,
        debit_account_id=clearing,
        credit_account_id=wallet,
        amount=amount,
        ledger=currency,
        code=int(TransferCode.TOP_UP),
        flags=int(TransferFlags.PENDING),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, [("hold", hold)])
    if not applied(results):
        async with runtime.unit_of_work.begin() as session:
            payment = await load(session, payment_id)
            payment.parked_instrument = None
            await advance(session, payment, State.FAILED, reason="ledger")
        raise_for(failure(results))
    await _charge(runtime, payment_id, provider_name, amount, currency, method, instrument)


def _new_payment(
    payment_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    method: str,
    provider: str,
    instrument: str,
    debit: uuid.UUID,
    credit: uuid.UUID,
) -> Payment:
    now = now_ns()
    return Payment(
        id=payment_id,
        tenant_id=tenant_id,
        mode=mode.value,
        kind=Kind.TOP_UP.value,
        state=State.CREATED.value,
        amount=amount,
        currency=currency,
        captured_amount=0,
        refunded_amount=0,
        payer_user_id=None,
        payee_user_id=user_id,
        merchant_id=None,
        debit_account_id=debit,
        credit_account_id=credit,
        provider=provider,
        method=method,
        instrument=instrument[-4:],
        capture_mode="automatic",
        created_at=now,
        updated_at=now,
    )


async def _charge(
    runtime: PaymentsRuntime,
    payment_id: uuid.UUID,
    provider_name: str,
    amount: int,
    currency: str,
    method: str,
    instrument: str,
) -> None:
    request = ChargeRequest(
        reference=format_id("pay", payment_id),
        amount_minor=amount,
        currency=currency,
        method=method,
        instrument=instrument,
    )
    try:
        response = await asyncio.wait_for(
            runtime.provider(provider_name).charge(request), runtime.provider_timeout_s
        )
    except (ProviderTimeout, TimeoutError):
        # The outcome is unknown: the provider's notification (or a status query) decides.
        async with runtime.unit_of_work.begin() as session:
            payment = await load(session, payment_id)
            payment.parked_instrument = None
            await advance(session, payment, State.PROCESSING, reason="provider_timeout")
        return
    await _after_charge(runtime, payment_id, response)


async def _after_charge(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, response: ProviderResponse
) -> None:
    """Record what the provider answered (or its status says) about the charge."""
    if response.status is ProviderStatus.FAILED:
        await fail_top_up(runtime, payment_id, reason=response.failure_code or "failed")
        return
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        payment.provider_reference = response.provider_reference
        payment.parked_instrument = None
        if response.status is ProviderStatus.REQUIRES_ACTION:
            payment.next_action_url = response.next_action_url
            await advance(session, payment, State.REQUIRES_ACTION, reason="3ds_challenge")
        else:
            await advance(session, payment, State.PROCESSING, reason="provider_accepted")
    if response.status is ProviderStatus.SUCCEEDED:
        await settle_top_up(runtime, payment_id, reason="provider_succeeded")


async def resume_top_up(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """Finish a top-up a crash left before the provider answered (still `created`, or
    `processing` without a provider reference): the provider's status for the payment id
    (its idempotency key) says whether the charge reached it; if it did, its answer is
    recorded as if just received; if not, the charge cannot be sent again (Billfold keeps
    only the instrument's last four characters), so the hold is voided and the top-up
    fails (`interrupted`). Idempotent; what happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    unanswered = payment.state == State.CREATED.value or (
        payment.state == State.PROCESSING.value and payment.provider_reference is None
    )
    if payment.kind != Kind.TOP_UP.value or not unanswered or payment.provider is None:
        return f"ignored_{payment.state}"
    try:
        response = await asyncio.wait_for(
            runtime.provider(payment.provider).status(format_id("pay", payment_id)),
            runtime.provider_timeout_s,
        )
    except (ProviderTimeout, TimeoutError):
        return "provider_unavailable"  # asked again next round
    if response is not None:
        await _after_charge(runtime, payment_id, response)
        return f"resumed_{response.status.value}"
    if not await release_holds(runtime, payment, ["hold"]):
        return "ignored_posted"  # the top-up settled meanwhile
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        payment.failure_code = "interrupted"
        await advance(session, payment, State.FAILED, reason="interrupted")
    return "failed_interrupted"


async def settle_top_up(runtime: PaymentsRuntime, payment_id: uuid.UUID, *, reason: str) -> str:
    """Post the pending top-up with its fees; idempotent. What happened, for the record.

    The fees are priced once and recorded before the ledger posts them (the payment's row
    locked meanwhile): a settlement resumed after a crash (the provider's notification
    again, or recovery) posts the recorded lines, so the ledger answers `exists` whatever
    the schedule or the monthly volume says by then. Priced anew at each attempt, a changed
    price made the ledger refuse the resumed chain, and the top-up stayed `processing` with
    its money moved."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state in (State.SUCCEEDED.value, State.FAILED.value):
            return f"ignored_{payment.state}"
        quote = recorded_quote(
            payment, await PaymentRepository(session).fees(payment_id), stage=_SETTLE
        )
        if not quote.lines:  # not priced yet (or free then: priced now, posted once)
            quote = charged_lines(
                await quote_fees(
                    session,
                    runtime.fee_quoter,
                    payment=payment,
                    method=payment.method or "card",
                    amount=payment.amount,
                )
            )
            await record_fees(session, payment, quote, stage=_SETTLE)
    assert payment.credit_account_id is not None
    steps: list[tuple[str, NewTransfer]] = [
        (
            _SETTLE,
            NewTransfer(
                id=step_id(payment_id, _SETTLE),
                tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
                pending_id=step_id(payment_id, "hold"),
                flags=int(TransferFlags.POST_PENDING),
                user_data=format_id("pay", payment_id),
            ),
        ),
        *fee_transfers(payment, quote, stage=_SETTLE, payer_account_id=payment.credit_account_id),
    ]
    results = await apply_steps(runtime, payment_id, chain(steps))
    if not applied(results):
        return f"ledger_{failure(results)}"
    async with runtime.unit_of_work.begin() as session:
        # Locked: a settlement racing this one (the notification and recovery's status
        # query at once) waits, then finds it succeeded and records nothing twice.
        payment = await load(session, payment_id, for_update=True)
        payment.captured_amount = payment.amount
        await advance(session, payment, State.SUCCEEDED, reason=reason)
    return "applied"


async def fail_top_up(runtime: PaymentsRuntime, payment_id: uuid.UUID, *, reason: str) -> str:
    """Void the pending top-up (step `void`) and fail it with `reason`, the provider's
    failure; idempotent, and ignored once it succeeded."""
    return await _void_and_fail(runtime, payment_id, step="void", reason=reason)


async def abandon_top_up(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """End a top-up whose payer abandoned the 3-D Secure challenge: void the pending amount
    (step `ABANDON`) and fail it with `AUTHENTICATION_ABANDONED`. Idempotent: run again
    after a crash between the void and the failure (`abandonment_voided`), the ledger
    answers the void `exists` and the failure is recorded, once."""
    return await _void_and_fail(runtime, payment_id, step=ABANDON, reason=AUTHENTICATION_ABANDONED)


async def abandonment_voided(runtime: PaymentsRuntime, payment: Payment) -> bool:
    """Whether the ledger holds the void of the top-up's abandonment (`abandon_top_up`):
    its pending amount was released because its challenge was abandoned, whether or not
    the failure was recorded. Not a void for a provider's failure (step `void`), nor an
    interrupted top-up's release (`hold:release`)."""
    found = await runtime.book.ledger.lookup_transfers(
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        ids=[step_id(payment.id, ABANDON)],
    )
    return bool(found)


async def _void_and_fail(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, *, step: str, reason: str
) -> str:
    """Void the pending top-up with the transfer of `step`, then record the failure."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if payment.state in (State.SUCCEEDED.value, State.FAILED.value):
            return f"ignored_{payment.state}"
    void = NewTransfer(
        id=step_id(payment_id, step),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        pending_id=step_id(payment_id, "hold"),
        flags=int(TransferFlags.VOID_PENDING),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, [(step, void)])
    if not applied(results):
        return f"ledger_{failure(results)}"
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)  # one failure recorded
        if payment.state in (State.SUCCEEDED.value, State.FAILED.value):
            return f"ignored_{payment.state}"  # recorded meanwhile: its code stays
        payment.failure_code = reason[:64]
        payment.parked_instrument = None
        if await advance(session, payment, State.FAILED, reason=reason):
            # Fees priced for a settlement that never posted (voided instead): none charged.
            repository = PaymentRepository(session)
            fees = await repository.fees(payment_id)
            priced = recorded_fees(payment, fees, stage=_SETTLE, count=len(fees))
            await repository.delete_fees(payment_id, [fee.transfer_id for _, fee in priced])
    return "applied"

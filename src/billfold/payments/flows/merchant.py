"""Merchant payments: the merchant creates, the payer authorizes from their wallet (a
pending transfer with a timeout), the merchant captures all or part (posting it, linked
with the fees and the split shares) or voids it; automatic capture captures at once."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.fx.service import conversion_transfer_ids
from billfold.identity.types import Mode
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags
from billfold.payments.errors import (
    CaptureExceedsAuthorized,
    CaptureInProgress,
    FeesExceedAmount,
    InvalidStateTransition,
    PaymentExpired,
    SelfPayment,
)
from billfold.payments.flows import crossfx, gate
from billfold.payments.flows.common import (
    apply_steps,
    chain,
    failure,
    load,
    now_ns,
    raise_for,
    require_visible,
)
from billfold.payments.flows.splits import split_shares, valid_rule
from billfold.payments.models import Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import (
    charged_lines,
    check_spending_limits,
    fee_transfers,
    quote_fees,
    record_created,
    record_fees,
    recorded_fees,
    recorded_quote,
    require_step_up,
    transition,
)
from billfold.payments.states import Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.gate import RiskContext, open_review
from billfold.risk.reviews import case_state
from billfold.risk.types import Action, MovementKind
from billfold.wallets.accounts import OwnerKind, TransferCode
from billfold.wallets.errors import InvalidMerchant, MerchantNotFound
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "authorize",
    "capture",
    "create_merchant_payment",
    "drive_capture",
    "expire",
    "recover_claim",
    "void",
]

NO_CONTEXT = RiskContext()
_CAPTURE = "capture"
_AUTHORIZED_OR_HELD = (State.AUTHORIZED.value, State.IN_REVIEW.value)


async def create_merchant_payment(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    merchant_id: uuid.UUID,
    amount: int,
    currency: str,
    reference: str | None,
    metadata: dict[str, str] | None,
    expires_at_ns: int | None,
    automatic_capture: bool,
    split_rule_id: uuid.UUID | None,
) -> uuid.UUID:
    async with runtime.unit_of_work.begin() as session:
        merchant = await WalletRepository(session).get_merchant(
            tenant_id=tenant_id, mode=mode.value, merchant_id=merchant_id
        )
        if merchant is None:
            raise MerchantNotFound("No such merchant.")
        if merchant.settlement_currency != currency:
            raise InvalidMerchant(
                f"The merchant is settled in {merchant.settlement_currency}, not {currency}."
            )
        if split_rule_id is not None:
            await valid_rule(session, tenant_id=tenant_id, mode=mode.value, rule_id=split_rule_id)
    wallet = await runtime.book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.MERCHANT,
        owner_id=merchant_id,
        currency=currency,
    )
    now = now_ns()
    payment = Payment(
        id=new_id(),
        tenant_id=tenant_id,
        mode=mode.value,
        kind=Kind.MERCHANT.value,
        state=State.REQUIRES_PAYMENT.value,
        amount=amount,
        currency=currency,
        captured_amount=0,
        refunded_amount=0,
        merchant_id=merchant_id,
        credit_account_id=wallet,
        method="wallet",
        reference=reference,
        metadata_json=json.dumps(metadata) if metadata else None,
        capture_mode="automatic" if automatic_capture else "manual",
        split_rule_id=split_rule_id,
        expires_at=expires_at_ns,
        created_at=now,
        updated_at=now,
    )
    async with runtime.unit_of_work.begin() as session:
        # A payment whose capture fees would take the whole amount could never be captured
        # (`fees_exceed_amount`): refused now, before a payer's money is held for it.
        await quote_fees(
            session, runtime.fee_quoter, payment=payment, method="wallet", amount=amount
        )
        await record_created(session, payment)
    return payment.id


async def authorize(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    source_currency: str | None = None,
    quote_id: uuid.UUID | None = None,
    context: RiskContext = NO_CONTEXT,
) -> None:
    """Hold the amount in the payer's wallet; from their `source_currency` wallet through
    FX (converted now, with `quote_id` or a quote made now) when that differs. Past the
    risk decision first, in the claim's transaction (`billfold.payments.flows.gate`): held
    for review, the payment goes to `in_review` instead of `authorized` (nothing captured)
    until approved."""
    ledger_tenant = ledger_tenant_of(tenant_id, mode)
    async with runtime.unit_of_work.begin() as session:
        payment = await load(
            session, payment_id, tenant_id=tenant_id, mode=mode.value, for_update=True
        )
        require_visible(payment, user_id)
        if payment.kind != Kind.MERCHANT.value:
            raise InvalidStateTransition("Only merchant payments are authorized by a payer.")
        if payment.state in _AUTHORIZED_OR_HELD and payment.payer_user_id == user_id:
            return  # a retry
        _claimable(payment, user_id)
        if payment.expires_at is not None and payment.expires_at <= now_ns():
            await transition(session, payment, State.EXPIRED, reason="expired_unpaid")
        cross = crossfx.CrossCurrency(source_currency, quote_id)
        source_currency = None
        if crossfx.wanted(cross.source_currency, cross.quote_id, payment.currency):
            source_currency = await crossfx.source_currency_of(
                session, ledger_tenant=ledger_tenant, choice=cross
            )
    if payment.state == State.EXPIRED.value:
        raise PaymentExpired("The payment expired before it was authorized.")
    wallet = await runtime.book.open_wallet(
        tenant_id=tenant_id,
        mode=mode,
        owner_kind=OwnerKind.USER,
        owner_id=user_id,
        currency=payment.currency,
    )
    if wallet == payment.credit_account_id:
        raise SelfPayment("A merchant cannot pay itself.")
    verified = await require_step_up(
        runtime.unit_of_work,
        threshold_minor=None,
        user_id=user_id,
        token=context.step_up_token,
        amount=payment.amount,
        currency=payment.currency,
        payee="" if payment.merchant_id is None else format_id("mer", payment.merchant_id),
    )
    source_wallet = None
    if source_currency is not None:
        source_wallet = await runtime.book.open_wallet(
            tenant_id=tenant_id,
            mode=mode,
            owner_kind=OwnerKind.USER,
            owner_id=user_id,
            currency=source_currency,
        )
    fx_quote = None
    async with runtime.unit_of_work.begin() as session:
        # The payer is claimed in the limit check's transaction (under the payer's lock):
        # from its commit the payment counts toward their limits, so concurrent
        # authorizations see each other. A retry does not count its own claim.
        spent_at = await check_spending_limits(
            session,
            tenant_id=tenant_id,
            mode=mode,
            user_id=user_id,
            currency=payment.currency,
            amount=payment.amount,
            excluding=payment_id,
        )
        claimed = await load(session, payment_id, for_update=True)
        if claimed.state in _AUTHORIZED_OR_HELD and claimed.payer_user_id == user_id:
            return  # a concurrent retry got there first
        require_visible(claimed, user_id)  # another payer's meanwhile: not theirs to see
        _claimable(claimed, user_id)
        if claimed.capture_mode == "automatic":
            # Captured at once: refused now, before anything is held or claimed, when the
            # capture's fees would take the whole amount (the schedule changed since).
            await quote_fees(
                session, runtime.fee_quoter, payment=claimed, method="wallet", amount=claimed.amount
            )
        verdict = await gate.decide(
            session,
            runtime,
            gate.movement(
                tenant_id=tenant_id,
                mode=mode,
                kind=MovementKind.MERCHANT_PAYMENT,
                amount=payment.amount,
                currency=payment.currency,
                at_ns=spent_at,
                user_id=user_id,
                payee=None
                if payment.merchant_id is None
                else format_id("mer", payment.merchant_id),
                merchant_id=payment.merchant_id,
                reference=format_id("pay", payment_id),
                context=context,
                step_up_verified=verified,
            ),
            challengeable=True,
        )
        if verdict.action in (Action.ALLOW, Action.REVIEW):  # else only the decision stays
            claimed.risk_decision_id = verdict.decision_id
            claimed.payer_user_id, claimed.debit_account_id = user_id, wallet
            claimed.spent_at = spent_at  # a retry counts when it was checked again
            if source_currency is not None and source_wallet is not None:
                fx_quote = await crossfx.lock_quote(
                    session,
                    runtime,
                    ledger_tenant=ledger_tenant,
                    quote_id=cross.quote_id,
                    source_currency=source_currency,
                    currency=payment.currency,
                    buy_amount=payment.amount,
                    sell_account_id=source_wallet,
                    buy_account_id=wallet,
                    now_ns=now_ns(),
                )
                claimed.fx_quote_id = fx_quote.id  # recovery finds the reservation by it
        if verdict.action is Action.REVIEW:
            await open_review(
                session,
                verdict,
                reference=format_id("pay", payment_id),
                hold_s=runtime.review_hold_s,
                at_ns=spent_at,
            )
    if verdict.action is Action.CHALLENGE:
        raise gate.challenge_error(verdict, step_up_payee=verdict.movement.payee or "")
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    held = verdict.action is Action.REVIEW
    conversion = [] if fx_quote is None else await crossfx.fx_steps(runtime, fx_quote)
    hold = NewTransfer(
        id=step_id(payment_id, "hold"),
        tenant_id=ledger_tenant,
        debit_account_id=wallet,
        credit_account_id=payment.credit_account_id,
        amount=payment.amount,
        ledger=payment.currency,
        code=int(TransferCode.MERCHANT_PAYMENT),
        flags=int(TransferFlags.PENDING),
        # Held for review: the authorization's time starts once approved.
        timeout_s=runtime.authorization_hold_s + (runtime.review_hold_s if held else 0),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, chain([*conversion, ("hold", hold)]))
    if not applied(results):
        release_fx = fx_quote is not None and not await crossfx.legs_recorded(
            runtime, fx_quote.id, ledger_tenant
        )
        async with runtime.unit_of_work.begin() as session:
            if release_fx and fx_quote is not None:
                await crossfx.release(session, ledger_tenant=ledger_tenant, quote_id=fx_quote.id)
            await _unclaim(session, payment_id, user_id)
            if held:
                await gate.close_review(
                    session, claimed, reference=format_id("pay", payment_id), at_ns=now_ns()
                )
        raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        # Locked: a retry racing this one records the state change once (it finds it made).
        payment = await load(session, payment_id, for_update=True)
        payment.payer_user_id, payment.debit_account_id = user_id, wallet
        if payment.spent_at is None:  # unclaimed meanwhile by a concurrent failed retry
            payment.spent_at = spent_at
        if fx_quote is not None:
            payment.source_currency, payment.source_amount = source_currency, fx_quote.sell_amount
            payment.fx_quote_id = fx_quote.id
        if held:
            await transition(session, payment, State.IN_REVIEW, reason="risk_review")
            return
        payment.authorization_expires_at = now_ns() + runtime.authorization_hold_s * 1_000_000_000
        await transition(session, payment, State.AUTHORIZED, reason="payer_authorized")
    if payment.capture_mode == "automatic":
        try:
            await capture(
                runtime, tenant_id=tenant_id, mode=mode, payment_id=payment_id, amount=None
            )
        except FeesExceedAmount:
            # The schedule changed between the check above and the capture: the payment
            # stays authorized (the merchant captures or voids it) and the answer says so.
            return


async def capture(
    runtime: PaymentsRuntime,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    payment_id: uuid.UUID,
    amount: int | None,
) -> None:
    """Capture `amount` (None: all) of an authorized payment. The first attempt claims the
    amount and prices its fees under the payment's row lock, before the ledger moves
    anything; a retry of the same amount (after a crash, a lost answer, or at once) posts
    and records what was claimed, and another amount is 409 `capture_in_progress` until
    the claim is recorded or the hold is voided or expires."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(
            session, payment_id, tenant_id=tenant_id, mode=mode.value, for_update=True
        )
        amount = payment.amount if amount is None else amount
        if payment.state == State.CAPTURED.value and payment.captured_amount == amount:
            return  # a retry
        if payment.state != State.AUTHORIZED.value:
            raise InvalidStateTransition(f"The payment is {payment.state}.", state=payment.state)
        if amount > payment.amount:
            raise CaptureExceedsAuthorized("A capture cannot exceed the authorized amount.")
        claimed = payment.capture_claim
        if claimed is not None and claimed != amount:
            raise CaptureInProgress(
                f"A capture of {claimed} is under way: only it can be captured.",
                amount=str(claimed),
            )
        lapsed = claimed is None and _lapsed(payment)
        if claimed is None and not lapsed:
            await _claim(session, runtime, payment, amount)
    if lapsed:
        await expire(runtime, payment_id)
        raise PaymentExpired("The authorization expired.")
    await drive_capture(runtime, payment_id)


async def _claim(
    session: AsyncSession, runtime: PaymentsRuntime, payment: Payment, amount: int
) -> None:
    """Claim the capture of `amount` and record its fees (priced now, once)."""
    quote = charged_lines(
        await quote_fees(
            session, runtime.fee_quoter, payment=payment, method="wallet", amount=amount
        )
    )
    await record_fees(session, payment, quote, stage=_CAPTURE)
    payment.capture_claim = amount
    payment.capture_claimed_at = now_ns()


async def drive_capture(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """Post the claimed capture — the hold (the claimed amount of it) linked with the
    recorded fees and the split shares of the rest — then record it. Re-driven (a retry,
    recovery), the same chain is answered `exists`; a chain the ledger already holds is
    recorded as posted even if a split rule changed since. Recovery calls it for claims a
    crash left; what happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        amount = payment.capture_claim
        if payment.state == State.CAPTURED.value:
            return "ignored_captured"  # recorded meanwhile
        if payment.state != State.AUTHORIZED.value or amount is None:
            raise InvalidStateTransition(f"The payment is {payment.state}.", state=payment.state)
        quote = recorded_quote(
            payment, await PaymentRepository(session).fees(payment_id), stage=_CAPTURE
        )
        shares = await split_shares(session, payment=payment, amount=amount - quote.total_minor)
    mode = Mode(payment.mode)
    assert payment.credit_account_id is not None
    post = NewTransfer(
        id=step_id(payment_id, _CAPTURE),
        tenant_id=ledger_tenant_of(payment.tenant_id, mode),
        pending_id=step_id(payment_id, "hold"),
        amount=amount,
        flags=int(TransferFlags.POST_PENDING),
        user_data=format_id("pay", payment_id),
    )
    fees = fee_transfers(payment, quote, stage=_CAPTURE, payer_account_id=payment.credit_account_id)
    for share in shares:
        await runtime.book.open_wallet(
            tenant_id=payment.tenant_id,
            mode=mode,
            owner_kind=OwnerKind.MERCHANT,
            owner_id=share.merchant_id,
            currency=payment.currency,
        )
    steps = [(_CAPTURE, post), *fees, *[(share.step, share.transfer) for share in shares]]
    results = await apply_steps(runtime, payment_id, chain(steps))
    if not applied(results) and await _posted_capture(runtime, payment) != amount:
        await _refused(runtime, payment_id, failure(results))
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state == State.CAPTURED.value:
            return "ignored_captured"  # a concurrent retry recorded it
        payment.captured_amount = amount
        payment.capture_claim = payment.capture_claimed_at = None
        await transition(session, payment, State.CAPTURED, reason=f"captured:{amount}")
    return "captured"


async def _posted_capture(runtime: PaymentsRuntime, payment: Payment) -> int | None:
    """The amount the ledger's capture of `payment` posted, if it has one."""
    found = await runtime.book.ledger.lookup_transfers(
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        ids=[step_id(payment.id, _CAPTURE)],
    )
    return found[0].amount if found else None


async def _forget_claim(session: AsyncSession, payment: Payment) -> None:
    """The hold was released, so a claimed capture will never post: its fees go."""
    if payment.capture_claim is None:
        return
    repository = PaymentRepository(session)
    fees = await repository.fees(payment.id)
    priced = recorded_fees(payment, fees, stage=_CAPTURE, count=len(fees))
    await repository.delete_fees(payment.id, [fee.transfer_id for _, fee in priced])
    payment.capture_claim = payment.capture_claimed_at = None


async def void(
    runtime: PaymentsRuntime, *, tenant_id: uuid.UUID, mode: Mode, payment_id: uuid.UUID
) -> None:
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, tenant_id=tenant_id, mode=mode.value)
        if payment.state == State.VOIDED.value:
            return
        if payment.state == State.REQUIRES_PAYMENT.value:
            raise InvalidStateTransition("Nothing is authorized yet.", state=payment.state)
        if payment.state != State.AUTHORIZED.value:
            raise InvalidStateTransition(f"The payment is {payment.state}.", state=payment.state)
    release = NewTransfer(
        id=step_id(payment_id, "void"),
        tenant_id=ledger_tenant_of(tenant_id, mode),
        pending_id=step_id(payment_id, "hold"),
        flags=int(TransferFlags.VOID_PENDING),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, [("void", release)])
    if not applied(results):
        await _refused(runtime, payment_id, failure(results))
    async with runtime.unit_of_work.begin() as session:
        # Locked: of two voids at once (or a void and an expiry) one records the change.
        payment = await load(session, payment_id, for_update=True)
        await _forget_claim(session, payment)
        await transition(session, payment, State.VOIDED, reason="voided")


async def expire(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """Scheduled work: a merchant payment past its expiry expires. Unpaid: nothing to move.
    Authorized past `authorization_expires_at`: the hold is voided (the payer gets the
    money back at once, whatever the ledger's own timeout) — unless a capture posted it
    first, which then wins, or the merchant's void released it first, which makes the
    payment `voided`. Idempotent; what happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        now = now_ns()
        if payment.state == State.REQUIRES_PAYMENT.value:
            if payment.expires_at is None or payment.expires_at > now:
                return "ignored_not_due"
            if payment.payer_user_id is not None:
                return "ignored_claimed"  # its hold may be placed: `recover_claim` decides
            await transition(session, payment, State.EXPIRED, reason="expired_unpaid")
            return "expired_unpaid"
        if payment.state != State.AUTHORIZED.value:
            return f"ignored_{payment.state}"
        due = payment.authorization_expires_at
        if due is None or due > now:
            return "ignored_not_due"
    release = NewTransfer(
        id=step_id(payment_id, "expire"),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        pending_id=step_id(payment_id, "hold"),
        flags=int(TransferFlags.VOID_PENDING),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, [("expire", release)])
    status = failure(results)
    # Already voided: the merchant's void (its own step) released the hold first, and
    # has not recorded itself yet (under way, or a crash): the payment is voided.
    voided = status is CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED
    released = applied(results) or voided or status is CreateTransferStatus.PENDING_TRANSFER_EXPIRED
    if status is CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED:
        return await _recover_capture(runtime, payment_id)
    if not released:
        return f"ledger_{status}"
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.AUTHORIZED.value:
            return f"ignored_{payment.state}"  # a concurrent void recorded itself
        await _forget_claim(session, payment)
        if voided:
            await transition(session, payment, State.VOIDED, reason="voided")
            return "voided"
        await transition(session, payment, State.EXPIRED, reason="authorization_expired")
    return "expired_authorization"


async def _recover_capture(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> str:
    """The hold of an authorized payment was posted: a capture reached the ledger. A
    capture still under way records itself; one a crash interrupted (the money moved, the
    payment still `authorized`) is recorded now by driving its claim again (its chain is
    answered `exists`). A capture an earlier release made has no claim: it is claimed now,
    for the amount the ledger posted, at today's price."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if payment.state != State.AUTHORIZED.value:
            return f"ignored_{payment.state}"
    amount = await _posted_capture(runtime, payment)
    if amount is None:
        return f"ledger_{CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED}"
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.AUTHORIZED.value:
            return f"ignored_{payment.state}"  # the capture recorded itself meanwhile
        if payment.capture_claim is None:
            await _claim(session, runtime, payment, amount)
    outcome = await drive_capture(runtime, payment_id)
    return "captured_recovered" if outcome == "captured" else outcome


async def recover_claim(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, *, claimed_before_ns: int
) -> str:
    """Scheduled work: finish an authorization a crash (or a ledger call that raised) left
    between its claim and its state change, once the claim is older than `claimed_before_ns`.
    The ledger decides: holding the payment's `hold` (linked with any conversion), the
    payment is authorized as `authorize` would have done (automatic capture included);
    without it, the claim is released (payer, debit account, `spent_at`, FX quote) so it no
    longer counts toward the payer's limits. Idempotent; the row is locked and the claim
    re-checked, so a payer's concurrent retry (which claims anew) is left alone. What
    happened, for the log."""
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
        if not _stale_claim(payment, claimed_before_ns):
            return "ignored_not_stale"
        claim = (payment.payer_user_id, payment.spent_at, payment.fx_quote_id)
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    found = await runtime.book.ledger.lookup_transfers(
        tenant_id=ledger_tenant, ids=[step_id(payment_id, "hold")]
    )
    if not found:
        return await _release_claim(runtime, payment_id, claim, ledger_tenant)
    hold = found[0]
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.REQUIRES_PAYMENT.value or payment.payer_user_id != claim[0]:
            return f"ignored_{payment.state}"  # finished (or released) meanwhile
        if hold.debit_account_id != payment.debit_account_id:
            return "ignored_other_account"  # cannot be: the hold is made from the claim's
        steps = {"hold": hold.id}
        if payment.fx_quote_id is not None:
            quote = await crossfx.reserved_quote(
                session, ledger_tenant=ledger_tenant, quote_id=payment.fx_quote_id
            )
            steps |= dict(zip(crossfx.FX_STEPS, conversion_transfer_ids(quote.id), strict=True))
            payment.source_currency, payment.source_amount = quote.sell_currency, quote.sell_amount
        await PaymentRepository(session).record_transfers(payment_id, steps)
        reference = format_id("pay", payment_id)
        if payment.risk_decision_id is not None and (
            await case_state(
                session, tenant_id=payment.tenant_id, mode=payment.mode, reference=reference
            )
            == "open"
        ):
            await transition(session, payment, State.IN_REVIEW, reason="risk_review:recovered")
            return "held"
        payment.authorization_expires_at = (
            hold.expires_at
            if hold.expires_at is not None
            else hold.timestamp + runtime.authorization_hold_s * 1_000_000_000
        )
        await transition(session, payment, State.AUTHORIZED, reason="payer_authorized:recovered")
    if payment.capture_mode == "automatic":
        try:
            await capture(
                runtime,
                tenant_id=payment.tenant_id,
                mode=Mode(payment.mode),
                payment_id=payment_id,
                amount=None,
            )
        except FeesExceedAmount as error:
            return await _release_uncapturable(runtime, payment_id, ledger_tenant, code=error.code)
        return "authorized_captured"
    return "authorized"


async def _release_uncapturable(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, ledger_tenant: uuid.UUID, *, code: str
) -> str:
    """Recovery authorized an automatic-capture payment whose capture the fees now refuse.
    The payer's `authorize` refuses such a payment before holding anything; recovery
    cannot (the hold is placed), so it must not leave the payer's money held for a capture
    that cannot happen, nor the merchant unaware: the hold is released (the void's own
    step, so a merchant's void at once is answered `exists`) and the payment is `voided`
    with the refusal's code as `failure_code` and in its history."""
    release = NewTransfer(
        id=step_id(payment_id, "void"),
        tenant_id=ledger_tenant,
        pending_id=step_id(payment_id, "hold"),
        flags=int(TransferFlags.VOID_PENDING),
        user_data=format_id("pay", payment_id),
    )
    results = await apply_steps(runtime, payment_id, [("void", release)])
    status = failure(results)
    if not applied(results) and status is not CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED:
        return f"capture_refused_{code}:ledger_{status}"  # a capture or expiry got there first
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.AUTHORIZED.value:
            return f"ignored_{payment.state}"  # a concurrent void or expiry recorded itself
        await _forget_claim(session, payment)
        payment.failure_code = code
        await transition(session, payment, State.VOIDED, reason=f"automatic_capture_failed:{code}")
    return f"voided_{code}"


def _stale_claim(payment: Payment, claimed_before_ns: int) -> bool:
    return (
        payment.kind == Kind.MERCHANT.value
        and payment.state == State.REQUIRES_PAYMENT.value
        and payment.payer_user_id is not None
        and payment.spent_at is not None
        and payment.spent_at < claimed_before_ns
    )


async def _release_claim(
    runtime: PaymentsRuntime,
    payment_id: uuid.UUID,
    claim: tuple[uuid.UUID | None, int | None, uuid.UUID | None],
    ledger_tenant: uuid.UUID,
) -> str:
    """No hold in the ledger: release the claim (and its FX quote, unless its legs were
    recorded), unless a retry claimed the payment anew meanwhile."""
    payer, _, quote_id = claim
    release_fx = quote_id is not None and not await crossfx.legs_recorded(
        runtime, quote_id, ledger_tenant
    )
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id, for_update=True)
        if payment.state != State.REQUIRES_PAYMENT.value:
            return f"ignored_{payment.state}"
        if (payment.payer_user_id, payment.spent_at, payment.fx_quote_id) != claim:
            return "ignored_reclaimed"
        if release_fx and quote_id is not None:
            await crossfx.release(session, ledger_tenant=ledger_tenant, quote_id=quote_id)
        assert payer is not None
        await _unclaim(session, payment_id, payer)
        await gate.close_review(
            session, payment, reference=format_id("pay", payment_id), at_ns=now_ns()
        )
    return "unclaimed"


def _claimable(payment: Payment, user_id: uuid.UUID) -> None:
    """Refuse to authorize a payment that is no longer awaiting payment, or that another
    payer is authorizing (claimed in their limit check, until their hold is decided)."""
    if payment.state != State.REQUIRES_PAYMENT.value:
        raise InvalidStateTransition(f"The payment is {payment.state}.", state=payment.state)
    if payment.payer_user_id not in (None, user_id):
        raise InvalidStateTransition(
            "Another payer is authorizing the payment.", state=payment.state
        )


async def _unclaim(session: AsyncSession, payment_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """The hold failed: the payment no longer counts toward the payer's limits, and is
    anyone's to pay again (unless it moved on meanwhile)."""
    payment = await load(session, payment_id, for_update=True)
    if payment.state == State.REQUIRES_PAYMENT.value and payment.payer_user_id == user_id:
        payment.payer_user_id = payment.debit_account_id = payment.spent_at = None
        payment.fx_quote_id = None


def _lapsed(payment: Payment) -> bool:
    """Whether an authorized payment is past its authorization's expiry."""
    due = payment.authorization_expires_at
    return due is not None and due <= now_ns()


async def _refused(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, status: CreateTransferStatus | None
) -> None:
    """An authorization the ledger expired is recorded as such before the error."""
    if status is CreateTransferStatus.PENDING_TRANSFER_EXPIRED:
        async with runtime.unit_of_work.begin() as session:
            payment = await load(session, payment_id, for_update=True)
            if payment.state == State.AUTHORIZED.value:  # else recorded meanwhile
                await _forget_claim(session, payment)
                await transition(session, payment, State.EXPIRED, reason="hold_expired")
        raise PaymentExpired("The authorization expired.")
    raise_for(status)

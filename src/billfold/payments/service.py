"""Decisions shared by every flow: state transitions (with their history), fee transfers,
limits and recipients. Never commits; never calls the ledger."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.identity.users.errors import InvalidIdentifier
from billfold.identity.users.identifiers import normalize_handle, normalize_phone
from billfold.identity.users.models import EndUser
from billfold.identity.users.repository import UserRepository
from billfold.identity.users.step_up import verify_step_up
from billfold.identity.users.work import run_recording_failures
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import InvalidId, new_id, parse_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import (
    FeesExceedAmount,
    InvalidStateTransition,
    LimitExceeded,
    RecipientNotFound,
    StepUpRequired,
)
from billfold.payments.events import emit_payment_event
from billfold.payments.fees.types import FeeContext, FeeLine, FeeQuote, FeeQuoter
from billfold.payments.models import Payment, PaymentFee, PaymentStateChange
from billfold.payments.repository import PaymentRepository
from billfold.payments.states import Kind, State, can_transition
from billfold.payments.steps import step_id
from billfold.wallets.accounts import OwnerKind, SystemRole, TransferCode, system_account_id
from billfold.wallets.limits import DEFAULT_TIER, check_limits
from billfold.wallets.overrides import overrides_by_window
from billfold.wallets.reductions import reduction_in_force
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import currency_exponent, ledger_tenant_of
from billfold.wallets.tier_limits import figures_of, tenant_figures

__all__ = [
    "FEE_LINES_MAX",
    "VOLUME_SHARDS",
    "VOLUME_TENANT_SCOPE",
    "add_monthly_volume",
    "charged_lines",
    "check_spending_limits",
    "fee_transfers",
    "find_recipient",
    "month_of",
    "quote_fees",
    "record_created",
    "record_fees",
    "recorded_fees",
    "recorded_quote",
    "require_step_up",
    "transition",
]

_NANOSECONDS_PER_SECOND = 1_000_000_000
FEE_LINES_MAX = 8
"""At most this many charged (non-zero) fee lines a quote may hold: a payment held with
its fees (a withdrawal, a P2P payment in review) releases at most this many after a crash."""
VOLUME_TENANT_SCOPE = "tenant"
VOLUME_SHARDS = 8
"""Rows a scope's monthly volume is spread over, so concurrent payments rarely wait."""
_VOLUME_STATES = (State.SUCCEEDED, State.CAPTURED)


def month_of(at_ns: int) -> str:
    """The calendar month (UTC) of a moment, `YYYY-MM`."""
    # Whole seconds, in integers: `at_ns / 1e9` is a float that rounds the last fraction
    # of a month's last second up into the next month.
    return datetime.fromtimestamp(at_ns // _NANOSECONDS_PER_SECOND, UTC).strftime("%Y-%m")


def _volume_scope(payment: Payment) -> str:
    """Fee tiers go by the merchant's volume for its payments, else by the volume of the
    tenant's payments without a merchant (top-ups, withdrawals, P2P)."""
    return payment.merchant_id.hex if payment.merchant_id is not None else VOLUME_TENANT_SCOPE


async def add_monthly_volume(session: AsyncSession, payment: Payment, *, at_ns: int) -> None:
    """Count a payment that just reached its payee (captured or succeeded) in this month's
    volume of its scope: its merchant's, or the tenant's for payments without a merchant
    (one row per payment, so merchants' captures never wait on one tenant-wide row)."""
    await PaymentRepository(session).add_volume(
        ledger_tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        scope=_volume_scope(payment),
        currency=payment.currency,
        month=month_of(at_ns),
        shard=payment.id.int % VOLUME_SHARDS,
        amount=payment.captured_amount,
    )


async def transition(
    session: AsyncSession, payment: Payment, to_state: State, *, reason: str | None = None
) -> bool:
    """Move `payment` to `to_state` and record it; False (nothing changes) when it is
    already there. The one place a payment changes state: the events domain's `emit()`
    goes here. Raises `invalid_state_transition` for a transition its kind does not have."""
    from_state = State(payment.state)
    if from_state is to_state and to_state is not State.PARTIALLY_REFUNDED:
        return False
    if not can_transition(Kind(payment.kind), from_state, to_state):
        raise InvalidStateTransition(
            f"A {payment.kind} payment cannot go from {from_state.value} to {to_state.value}.",
            state=from_state.value,
        )
    now_ns = time.time_ns()
    payment.state = to_state.value
    payment.updated_at = now_ns
    session.add(
        PaymentStateChange(
            id=new_id(),
            payment_id=payment.id,
            from_state=from_state.value,
            to_state=to_state.value,
            reason=reason[:128] if reason else None,
            at=now_ns,
        )
    )
    emit_payment_event(session, payment, previous_state=from_state.value, at_ns=now_ns)
    if to_state in _VOLUME_STATES:
        await add_monthly_volume(session, payment, at_ns=now_ns)
    await session.flush()
    return True


async def record_created(session: AsyncSession, payment: Payment) -> None:
    """Add a new payment with its first history row and its ``created`` event."""
    history = PaymentStateChange(
        id=new_id(),
        payment_id=payment.id,
        from_state=None,
        to_state=payment.state,
        reason=None,
        at=payment.created_at,
    )
    emit_payment_event(session, payment, previous_state=None, at_ns=payment.created_at)
    await PaymentRepository(session).add(payment, history)


async def quote_fees(
    session: AsyncSession,
    quoter: FeeQuoter,
    *,
    payment: Payment,
    method: str,
    amount: int,
) -> FeeQuote:
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    volume = await PaymentRepository(session).volume(
        ledger_tenant_id=ledger_tenant,
        scope=_volume_scope(payment),
        currency=payment.currency,
        month=month_of(time.time_ns()),
    )
    quote = await quoter(
        session,
        FeeContext(
            # Schedules belong to the tenant in one mode (its ledger tenant), like its money.
            tenant_id=ledger_tenant,
            merchant_id=payment.merchant_id,
            method=method,
            currency=payment.currency,
            amount_minor=amount,
            monthly_volume_minor=volume,
        ),
    )
    charged = len([line for line in quote.lines if line.amount_minor])
    if charged > FEE_LINES_MAX:
        # Each charged line is a ledger transfer held or posted with the payment: a
        # schedule charging more is refused here, clearly, before anything moves.
        raise FeesExceedAmount(
            f"The fee schedule charged {charged} fee lines: at most {FEE_LINES_MAX} are allowed.",
            lines=charged,
            lines_max=FEE_LINES_MAX,
        )
    if any(line.currency != payment.currency or line.amount_minor < 0 for line in quote.lines):
        raise FeesExceedAmount("Fees must be non-negative and in the payment's currency.")
    if quote.total_minor >= amount:
        raise FeesExceedAmount("The fees would take the whole amount.", fees=str(quote.total_minor))
    return quote


def fee_transfers(
    payment: Payment,
    quote: FeeQuote,
    *,
    stage: str,
    payer_account_id: uuid.UUID,
    flags: int = 0,
) -> list[tuple[str, NewTransfer]]:
    """One transfer per non-zero fee line, from `payer_account_id` to fee revenue."""
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    revenue = system_account_id(
        ledger_tenant, name=SystemRole.FEE_REVENUE.value, currency=payment.currency
    )
    transfers = []
    for index, line in enumerate(quote.lines):
        if line.amount_minor == 0:
            continue
        step = f"{stage}:fee:{index}"
        transfers.append(
            (
                step,
                NewTransfer(
                    id=step_id(payment.id, step),
                    tenant_id=ledger_tenant,
                    debit_account_id=payer_account_id,
                    credit_account_id=revenue,
                    amount=line.amount_minor,
                    ledger=payment.currency,
                    code=int(TransferCode.FEE),
                    flags=flags,
                    user_data=f"pay_{payment.id.hex}",
                ),
            )
        )
    return transfers


async def record_fees(
    session: AsyncSession, payment: Payment, quote: FeeQuote, *, stage: str
) -> None:
    repository = PaymentRepository(session)
    for index, line in enumerate(quote.lines):
        if line.amount_minor == 0:
            continue
        await repository.record_fee(
            PaymentFee(
                transfer_id=step_id(payment.id, f"{stage}:fee:{index}"),
                payment_id=payment.id,
                rule=line.rule[:64],
                description=line.description[:200],
                amount=line.amount_minor,
                currency=line.currency,
                fixed_amount=min(max(line.fixed_minor, 0), line.amount_minor),
            )
        )


def charged_lines(quote: FeeQuote) -> FeeQuote:
    """The quote's non-zero lines, numbered from 0 (as they are recorded and posted)."""
    return FeeQuote(lines=tuple(line for line in quote.lines if line.amount_minor))


def recorded_fees(
    payment: Payment, fees: list[PaymentFee], *, stage: str, count: int
) -> list[tuple[int, PaymentFee]]:
    """The fee lines recorded for `stage` (steps `<stage>:fee:<n>`, n below `count`), each
    with its n, in the quote's order."""
    by_id = {step_id(payment.id, f"{stage}:fee:{i}"): i for i in range(count)}
    found = [(by_id[fee.transfer_id], fee) for fee in fees if fee.transfer_id in by_id]
    return sorted(found, key=lambda pair: pair[0])


def recorded_quote(payment: Payment, fees: list[PaymentFee], *, stage: str) -> FeeQuote:
    """The `charged_lines` recorded for `stage` before its ledger steps, in their order, as
    the quote the steps post (none recorded: no fees)."""
    ordered = recorded_fees(payment, fees, stage=stage, count=len(fees))
    return FeeQuote(
        lines=tuple(
            FeeLine(
                rule=fee.rule,
                description=fee.description,
                amount_minor=fee.amount,
                currency=fee.currency,
                fixed_minor=fee.fixed_amount,
            )
            for _, fee in ordered
        )
    )


async def check_spending_limits(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    currency: str,
    amount: int,
    excluding: uuid.UUID | None = None,
) -> int:
    """Raise `limit_exceeded` if `amount` breaks the user's limits: their tier's (the
    tenant's own figures for `mode`, the tier and `currency` when it set some, else the
    default table's), raised by any approved limit override, lowered by any risk reduction
    in force. `user_id` is an end user of `tenant_id` in `mode`. Call it in the
    transaction that records the payment (or, for a merchant payment, claims its payer):
    it locks the user's spending (PostgreSQL: an advisory lock until commit; SQLite's
    writer lock does the same), so
    concurrent payments are checked one after the other, each seeing the ones before it,
    and together never pass a limit. `excluding`: a payment already claimed by this user
    (a retried authorization), not counted twice. Returns the moment checked (ns), which
    the caller records as the payment's `spent_at`: the windows it counts in."""
    wallets = WalletRepository(session)
    await wallets.lock_holder(user_id)
    stored_tier = await wallets.tier_of(user_id)
    tier = DEFAULT_TIER if stored_tier is None else stored_tier
    own = await tenant_figures(
        session, tenant_id=tenant_id, mode=mode, tier=tier, currency=currency
    )
    overrides = await overrides_by_window(
        session, owner_kind=OwnerKind.USER, owner_id=user_id, currency=currency
    )
    reduction_bps = await reduction_in_force(session, user_id=user_id)
    at_ns = time.time_ns()
    now = datetime.fromtimestamp(at_ns // _NANOSECONDS_PER_SECOND, UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    repository = PaymentRepository(session)
    daily = await repository.spent_since(
        user_id=user_id, currency=currency, since_ns=_ns(day_start), excluding=excluding
    )
    monthly = await repository.spent_since(
        user_id=user_id, currency=currency, since_ns=_ns(month_start), excluding=excluding
    )
    breach = check_limits(
        tier=tier,
        exponent=currency_exponent(currency),
        amount_minor=amount,
        daily_used_minor=daily,
        monthly_used_minor=monthly,
        overrides=overrides,
        reduction_bps=reduction_bps,
        tier_figures=None if own is None else figures_of(own),
    )
    if breach is not None:
        raise LimitExceeded(
            f"The {breach.window} limit of {breach.limit_minor} {currency} minor units"
            " would be exceeded.",
            window=breach.window,
            limit=str(breach.limit_minor),
            used=str(breach.used_minor),
        )
    return at_ns


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * _NANOSECONDS_PER_SECOND


async def find_recipient(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: Mode, recipient: str
) -> EndUser:
    """The user `recipient` names: `usr_…`, a phone number (+…) or a handle (@name or name)."""
    users = UserRepository(session)
    user: EndUser | None = None
    try:
        if recipient.startswith("usr_"):
            user = await users.get_for_tenant(
                tenant_id=tenant_id, mode=mode, user_id=parse_id("usr", recipient)
            )
        elif recipient.startswith("+"):
            user = await _by_column(session, tenant_id, mode, phone=normalize_phone(recipient))
        else:
            handle = normalize_handle(recipient.removeprefix("@"))
            user = await _by_column(session, tenant_id, mode, handle=handle)
    except (InvalidId, InvalidIdentifier) as error:
        raise RecipientNotFound("No user has that id, phone or handle.") from error
    if user is None or user.status != "active":
        raise RecipientNotFound("No user has that id, phone or handle.")
    return user


async def _by_column(
    session: AsyncSession, tenant_id: uuid.UUID, mode: Mode, **column: str
) -> EndUser | None:
    from sqlalchemy import select

    [(name, value)] = column.items()
    statement = select(EndUser).where(
        EndUser.tenant_id == tenant_id,
        EndUser.mode == mode.value,
        getattr(EndUser, name) == value,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def require_step_up(
    unit_of_work: UnitOfWork,
    *,
    threshold_minor: int | None,
    user_id: uuid.UUID,
    token: str | None,
    amount: int,
    currency: str,
    payee: str,
) -> bool:
    """PSD2 dynamic linking: spend a step-up token bound to exactly this amount, currency
    and payee when the request carries one (whatever the amount: a token that does not
    verify is an error, recorded by identity and raised), and require one above the
    threshold (`step_up_required`). Whether a token verified (the risk engine's
    `step_up_verified`: a `challenge` is then satisfied)."""
    above = threshold_minor is not None and amount > threshold_minor
    if token is None and not above:
        return False
    if token is None:
        raise StepUpRequired(
            "This amount needs a step-up token.",
            amount=str(amount),
            currency=currency,
            payee=payee,
        )
    await run_recording_failures(
        unit_of_work,
        lambda session: verify_step_up(
            session, user_id=user_id, token=token, amount=amount, currency=currency, payee=payee
        ),
    )
    return True

"""Helpers every flow uses: loading a payment, advancing it after the ledger answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import format_id
from billfold.ledger.types import (
    CreateTransferStatus,
    NewTransfer,
    TransferFlags,
    TransferResult,
)
from billfold.payments.errors import (
    AccountFrozen,
    InsufficientFunds,
    InvalidStateTransition,
    LedgerRefused,
    PaymentNotFound,
)
from billfold.payments.models import Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.service import transition
from billfold.payments.states import TERMINAL, Kind, State, can_transition
from billfold.payments.steps import APPLIED, applied, failure_of, step_id
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "advance",
    "apply_steps",
    "chain",
    "load",
    "now_ns",
    "raise_for",
    "release_holds",
    "require_visible",
]


def chain(steps: Sequence[tuple[str, NewTransfer]]) -> list[tuple[str, NewTransfer]]:
    """The steps as one linked chain: all succeed or none (the last ends the chain)."""
    linked = int(TransferFlags.LINKED)
    last = len(steps) - 1
    return [
        (step, replace(t, flags=(t.flags | linked) if i < last else (t.flags & ~linked)))
        for i, (step, t) in enumerate(steps)
    ]


def now_ns() -> int:
    return time.time_ns()


async def load(
    session: AsyncSession,
    payment_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID | None = None,
    mode: str | None = None,
    for_update: bool = False,
) -> Payment:
    payment = await PaymentRepository(session).get(payment_id, for_update=for_update)
    if payment is None or (
        tenant_id is not None and (payment.tenant_id != tenant_id or payment.mode != mode)
    ):
        raise PaymentNotFound("No such payment.")
    return payment


def require_visible(payment: Payment, user_id: uuid.UUID) -> None:
    """Raise `payment_not_found` unless the wallet holder may see the payment (what `GET
    /v1/me/payments/{id}` shows them): their own, as payer or payee, or a payment still
    awaiting its payer. Every action of theirs on a payment checks it first, before any
    state: another's payment is answered as if it did not exist, never with its state."""
    awaiting_payer = payment.state == State.REQUIRES_PAYMENT.value
    if not awaiting_payer and user_id not in (payment.payer_user_id, payment.payee_user_id):
        raise PaymentNotFound("No such payment.")


async def advance(
    session: AsyncSession, payment: Payment, to_state: State, *, reason: str | None = None
) -> bool:
    """Like `transition`, for what providers report: a late or out-of-order report that
    the state machine no longer allows is ignored (False), never an error."""
    current = State(payment.state)
    if current in TERMINAL or not can_transition(Kind(payment.kind), current, to_state):
        return False
    return await transition(session, payment, to_state, reason=reason)


async def apply_steps(
    runtime: PaymentsRuntime, payment_id: uuid.UUID, steps: Sequence[tuple[str, NewTransfer]]
) -> list[TransferResult]:
    """Submit the steps' transfers in order; when all applied, record them on the payment."""
    results = await runtime.book.ledger.submit([transfer for _, transfer in steps])
    if applied(results):
        async with runtime.unit_of_work.begin() as session:
            await PaymentRepository(session).record_transfers(
                payment_id, {step: transfer.id for step, transfer in steps}
            )
    return results


_INSUFFICIENT = (CreateTransferStatus.EXCEEDS_CREDITS, CreateTransferStatus.EXCEEDS_DEBITS)
_STATE_CONFLICTS = (
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED,
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferStatus.PENDING_TRANSFER_EXPIRED,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_FIELDS,
    CreateTransferStatus.PENDING_TRANSFER_NOT_FOUND,
)


def raise_for(status: CreateTransferStatus | None) -> None:
    """The API error for a ledger refusal."""
    if status in _INSUFFICIENT:
        raise InsufficientFunds("The wallet does not hold enough available money.")
    if status is CreateTransferStatus.ACCOUNT_FROZEN:
        raise AccountFrozen("A wallet of this movement is frozen.")
    if status in _STATE_CONFLICTS:
        assert status is not None
        raise InvalidStateTransition(f"The ledger refused: {status.value}.", ledger=status.value)
    raise LedgerRefused(
        "The ledger refused the transfer.", ledger=status.value if status else "unknown"
    )


def failure(results: Sequence[TransferResult]) -> CreateTransferStatus | None:
    return failure_of(results)


_RELEASED = (
    *APPLIED,
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferStatus.PENDING_TRANSFER_EXPIRED,
)


async def release_holds(runtime: PaymentsRuntime, payment: Payment, steps: Sequence[str]) -> bool:
    """Void whichever of the payment's pending transfers named `steps` the ledger has
    (each on its own: a crash may have left any subset); whether nothing stays held for
    it — False when one was posted meanwhile (the payment went through after all)."""
    ledger_tenant = ledger_tenant_of(payment.tenant_id, payment.mode)
    wanted = {step_id(payment.id, step): step for step in steps}
    found = await runtime.book.ledger.lookup_transfers(tenant_id=ledger_tenant, ids=list(wanted))
    voids = [
        (
            f"{wanted[transfer.id]}:release",
            NewTransfer(
                id=step_id(payment.id, f"{wanted[transfer.id]}:release"),
                tenant_id=ledger_tenant,
                pending_id=transfer.id,
                flags=int(TransferFlags.VOID_PENDING),
                user_data=format_id("pay", payment.id),
            ),
        )
        for transfer in found
        if transfer.flags & TransferFlags.PENDING
    ]
    if not voids:
        return True
    results = await runtime.book.ledger.submit([transfer for _, transfer in voids])
    done = {
        step: transfer.id
        for (step, transfer), result in zip(voids, results, strict=True)
        if result.status in APPLIED
    }
    if done:
        async with runtime.unit_of_work.begin() as session:
            await PaymentRepository(session).record_transfers(payment.id, done)
    return all(result.status in _RELEASED for result in results)

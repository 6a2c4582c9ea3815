"""Disputes and chargebacks of a payment, opened by the provider or the tenant.

Opening holds the disputed amount in the wallet that received the money (a pending,
balancing transfer toward the claimant: it holds what is available, up to the amount).
A payment's disputes not won claim, in all, at most what it captured less what was
refunded (its row is locked while a dispute is opened, so disputes opened at once are
counted one after the other).
Won: the hold is voided. Lost: the hold is posted, and what the wallet could not cover
comes from the tenant's chargeback losses account, linked in one chain; the payment is
labelled fraud for the risk models (`risk_labels`, source `chargeback_lost`, with the
payment's `risk_decision_id`). The claimant is
the payer's wallet (merchant and P2P payments) or the provider's clearing account
(top-ups: the card issuer takes the money back).

A resolution first claims its outcome (`winning` or `losing`, under the dispute's row
lock), then applies the ledger steps, then enters `won` or `lost`: an opposite resolution
arriving meanwhile is refused, so the state always says what the ledger did (without the
claim, a `won` and a `lost` of a dispute that held nothing both applied, and the last
commit named the outcome). A claimed outcome is completed, by a retry or by recovery
(`drive_dispute`), never exchanged for the other. Each stable state a dispute enters
emits its event (`billfold.payments.events`).

A refusal to open or resolve is the API's 4xx either way; for a provider's notification
it matters whether the refusal can pass (`opening_refused_for_good`,
`resolution_refused_for_good`): one that cannot is not retried.

The ledger may refuse a dispute's money movement for a while: a frozen wallet (either
side) refuses the opening's hold, and the posting of a lost one's. Neither is taken for
an answer. A hold refused so leaves the dispute `opening` (`ledger_account_frozen`) and a
claimed outcome refused so stays claimed: recovery (`drive_dispute`) and the retried
notification apply them once the wallet is thawed, with the same transfer ids, so once.
Before, a frozen wallet's refusal of the hold opened the dispute holding nothing, as if
the wallet were empty: a loss then came wholly from chargeback losses and the wallet
that received the money kept it.
"""

from __future__ import annotations

import json
import uuid

import structlog

from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags
from billfold.payments.errors import DisputeNotFound, InvalidStateTransition, RefundExceedsCaptured
from billfold.payments.events import emit_dispute_event
from billfold.payments.flows.common import apply_steps, chain, failure, load, now_ns, raise_for
from billfold.payments.models import Dispute, Payment
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.states import TERMINAL, Kind, State
from billfold.payments.steps import applied, step_id
from billfold.risk.labels import LabelSource, record_label
from billfold.wallets.accounts import SystemRole, TransferCode, system_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "add_evidence",
    "drive_dispute",
    "open_dispute",
    "opening_refused_for_good",
    "resolution_refused_for_good",
    "resolve_dispute",
]

EVIDENCE_MAX = 20
_DISPUTABLE = ("succeeded", "captured", "partially_refunded", "refunded")
_CLAIMS = {"won": "winning", "lost": "losing"}
"""Each outcome, and the state that claims it while its ledger steps are applied."""
_CLAIMED = {claim: outcome for outcome, claim in _CLAIMS.items()}
_HOLD_REFUSALS_THAT_PASS = frozenset({CreateTransferStatus.ACCOUNT_FROZEN})
"""Refusals of an opening's hold that an operator's act lifts (a wallet thawed): the
dispute waits `opening` for them. Any other refusal is the same on every attempt (above
all `exceeds_credits`: nothing available to hold; or a closed wallet): the dispute opens
holding nothing, and a loss is covered by chargeback losses."""
log = structlog.get_logger(__name__)


async def open_dispute(
    runtime: PaymentsRuntime,
    *,
    payment_id: uuid.UUID,
    amount: int,
    opened_by: str,
    reason: str | None,
    provider_dispute_id: str | None = None,
) -> str:
    """Open (or finish opening) a dispute; `applied`, `duplicate`, or `ledger_<status>`
    when the ledger refused its hold for now (it stays `opening`: see `drive_dispute`)."""
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        payment = await load(session, payment_id, for_update=True)  # disputes opened at once
        dispute = None
        if provider_dispute_id is not None:
            dispute = await repository.dispute_by_provider_id(provider_dispute_id)
        if dispute is None:
            if payment.state not in _DISPUTABLE or payment.kind == "withdrawal":
                raise InvalidStateTransition(f"A {payment.state} payment cannot be disputed.")
            disputable = (
                payment.captured_amount
                - payment.refunded_amount
                - await repository.disputed_amount(payment_id)
            )
            if amount > disputable:
                raise RefundExceedsCaptured(
                    "Disputes cannot claim back more than was paid and not refunded, less"
                    f" what the payment's other disputes claim: {max(disputable, 0)} remains.",
                    disputable=str(max(disputable, 0)),
                )
            now = now_ns()
            dispute = Dispute(
                id=new_id(),
                payment_id=payment_id,
                amount=amount,
                held_amount=0,
                state="opening",
                opened_by=opened_by,
                provider_dispute_id=provider_dispute_id,
                reason=reason,
                evidence_json="[]",
                created_at=now,
                updated_at=now,
            )
            await repository.add(dispute)
        if dispute.state != "opening":
            return "duplicate"
    return await drive_dispute(runtime, dispute.id)


async def opening_refused_for_good(
    runtime: PaymentsRuntime, *, payment_id: uuid.UUID, amount: int
) -> str | None:
    """Why a dispute of `amount` that `open_dispute` refused could never open on the
    payment, however long one waited; None when it might yet: a charge still processing
    may succeed, a refund in flight may fail and an open dispute may be won, each giving
    room back. For good: a withdrawal (never disputable), a payment that ended without
    paying (failed, voided, expired), or an amount beyond what it captured less what it
    gave back for good (`claimed_for_good`)."""
    async with runtime.unit_of_work.read() as session:
        payment = await load(session, payment_id)
        if payment.kind == Kind.WITHDRAWAL.value:
            return "a withdrawal cannot be disputed"
        if payment.state not in _DISPUTABLE:
            ended = State(payment.state) in TERMINAL
            return f"a {payment.state} payment cannot be disputed" if ended else None
        given_back = await PaymentRepository(session).claimed_for_good(payment_id)
    ceiling = payment.captured_amount - given_back
    if amount > ceiling:
        return (
            f"the dispute claims {amount}, more than the payment can ever give back"
            f" ({max(ceiling, 0)})"
        )
    return None


async def resolution_refused_for_good(
    runtime: PaymentsRuntime, *, dispute_id: uuid.UUID, won: bool
) -> str | None:
    """Why a resolution `resolve_dispute` refused could never apply: the dispute claimed
    or entered the other outcome, which is completed, never exchanged. None when it might
    yet (a dispute still `opening` opens, by a retry or recovery, then takes either)."""
    outcome = "won" if won else "lost"
    other = "lost" if won else "won"
    async with runtime.unit_of_work.read() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id)
    if dispute is not None and dispute.state in (other, _CLAIMS[other]):
        return f"a {dispute.state} dispute cannot be {outcome}"
    return None


async def drive_dispute(runtime: PaymentsRuntime, dispute_id: uuid.UUID) -> str:
    """Finish what a dispute's state says is under way: place an opening dispute's hold and
    open it, or apply a claimed outcome's ledger steps and enter the outcome. Safe to call
    again after a crash at any point (its ledger ids derive from the dispute's, so a
    re-driven step is answered `exists`; a re-driven hold with the amount it holds).
    `applied`, or `duplicate` when nothing was under way or another call finished it;
    `ledger_<status>` when the ledger refused an opening's hold with a refusal that may pass
    (a frozen wallet), leaving it `opening` for the next drive. A claimed outcome the ledger
    refuses raises the refusal (`raise_for`), and stays claimed for the next drive."""
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id)
        if dispute is None:
            raise InvariantViolation("a driven dispute exists")
        payment = await load(session, dispute.payment_id)
    if dispute.state == "opening":
        return await _place_hold(runtime, dispute, payment)
    if dispute.state in _CLAIMED:
        return await _apply_outcome(runtime, dispute, payment, _CLAIMED[dispute.state])
    return "duplicate"


async def _place_hold(runtime: PaymentsRuntime, dispute: Dispute, payment: Payment) -> str:
    if payment.credit_account_id is None or payment.debit_account_id is None:
        raise InvariantViolation("a paid payment has both accounts")
    hold = NewTransfer(
        id=step_id(dispute.id, "hold"),
        tenant_id=ledger_tenant_of(payment.tenant_id, payment.mode),
        debit_account_id=payment.credit_account_id,
        credit_account_id=payment.debit_account_id,
        amount=dispute.amount,
        ledger=payment.currency,
        code=int(TransferCode.DISPUTE),
        flags=int(TransferFlags.PENDING | TransferFlags.BALANCING_DEBIT),
        user_data=format_id("dsp", dispute.id),
    )
    results = await apply_steps(runtime, payment.id, [(f"dispute:{dispute.id.hex}:hold", hold)])
    refusal = None if applied(results) else failure(results)
    if refusal in _HOLD_REFUSALS_THAT_PASS:
        assert refusal is not None
        log.info("payments.dispute_hold_refused", dispute=dispute.id.hex, ledger=refusal.value)
        return f"ledger_{refusal.value}"
    held = (results[0].amount or 0) if refusal is None else 0
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_dispute(dispute.id, for_update=True)
        assert row is not None
        if row.state != "opening":
            return "duplicate"
        row.state, row.held_amount, row.updated_at = "open", held, now_ns()
        emit_dispute_event(session, row, payment)
    return "applied"


async def add_evidence(
    runtime: PaymentsRuntime, *, dispute_id: uuid.UUID, kind: str, description: str
) -> Dispute:
    async with runtime.unit_of_work.begin() as session:
        # Locked: evidence sent at once is appended one after the other, none overwritten.
        dispute = await PaymentRepository(session).get_dispute(dispute_id, for_update=True)
        if dispute is None:
            raise DisputeNotFound("No such dispute.")
        if dispute.state != "open":
            raise InvalidStateTransition(f"A {dispute.state} dispute takes no evidence.")
        evidence = json.loads(dispute.evidence_json)
        if len(evidence) >= EVIDENCE_MAX:
            raise InvalidStateTransition(f"A dispute holds at most {EVIDENCE_MAX} items.")
        evidence.append({"kind": kind, "description": description, "at": now_ns()})
        dispute.evidence_json = json.dumps(evidence)
        dispute.updated_at = now_ns()
        return dispute


async def resolve_dispute(runtime: PaymentsRuntime, *, dispute_id: uuid.UUID, won: bool) -> str:
    """Resolve an open dispute: claim the outcome, then apply it (`drive_dispute`).
    `applied`; `duplicate` when it has that outcome already; a resolution of one whose
    other outcome is claimed or entered is refused."""
    outcome = "won" if won else "lost"
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id, for_update=True)
        if dispute is None:
            raise DisputeNotFound("No such dispute.")
        if dispute.state == outcome:
            return "duplicate"
        if dispute.state == "open":
            dispute.state, dispute.updated_at = _CLAIMS[outcome], now_ns()
        elif dispute.state != _CLAIMS[outcome]:  # the same claim: finish it
            raise InvalidStateTransition(f"A {dispute.state} dispute cannot be {outcome}.")
    applying = await drive_dispute(runtime, dispute_id)
    return "applied" if applying == "applied" else "duplicate"


async def _apply_outcome(
    runtime: PaymentsRuntime, dispute: Dispute, payment: Payment, outcome: str
) -> str:
    steps = _resolution_steps(
        payment_tenant=ledger_tenant_of(payment.tenant_id, payment.mode),
        dispute=dispute,
        won=outcome == "won",
        claimant=payment.debit_account_id,
        currency=payment.currency,
    )
    if steps:
        results = await apply_steps(runtime, payment.id, chain(steps))
        if not applied(results):  # the claim stays: a retry or recovery applies it
            raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_dispute(dispute.id, for_update=True)
        assert row is not None
        if row.state != _CLAIMS[outcome]:
            return "duplicate"
        row.state, row.updated_at = outcome, now_ns()
        emit_dispute_event(session, row, payment)
        if outcome == "lost":
            # A lost chargeback says the payment was fraud: a label the models learn from.
            await record_label(
                session,
                tenant_id=payment.tenant_id,
                mode=payment.mode,
                reference=format_id("pay", payment.id),
                fraud=True,
                source=LabelSource.CHARGEBACK_LOST,
                decision_id=payment.risk_decision_id,
                at_ns=row.updated_at,
            )
    return "applied"


def _resolution_steps(
    *,
    payment_tenant: uuid.UUID,
    dispute: Dispute,
    won: bool,
    claimant: uuid.UUID | None,
    currency: str,
) -> list[tuple[str, NewTransfer]]:
    prefix = f"dispute:{dispute.id.hex}"
    steps: list[tuple[str, NewTransfer]] = []
    if dispute.held_amount:
        flag = TransferFlags.VOID_PENDING if won else TransferFlags.POST_PENDING
        name = "void" if won else "post"
        steps.append(
            (
                f"{prefix}:{name}",
                NewTransfer(
                    id=step_id(dispute.id, name),
                    tenant_id=payment_tenant,
                    pending_id=step_id(dispute.id, "hold"),
                    flags=int(flag),
                    user_data=format_id("dsp", dispute.id),
                ),
            )
        )
    shortfall = dispute.amount - dispute.held_amount
    if not won and shortfall > 0 and claimant is not None:
        losses = system_account_id(
            payment_tenant, name=SystemRole.CHARGEBACK_LOSSES.value, currency=currency
        )
        steps.append(
            (
                f"{prefix}:loss",
                NewTransfer(
                    id=step_id(dispute.id, "loss"),
                    tenant_id=payment_tenant,
                    debit_account_id=losses,
                    credit_account_id=claimant,
                    amount=shortfall,
                    ledger=currency,
                    code=int(TransferCode.CHARGEBACK_LOSS),
                    user_data=format_id("dsp", dispute.id),
                ),
            )
        )
    return steps

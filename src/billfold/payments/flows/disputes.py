"""Disputes and chargebacks of a payment, opened by the provider or the tenant.

Opening holds the disputed amount in the wallet that received the money (a pending,
balancing transfer toward the claimant: it holds what is available, up to the amount).
Won: the hold is voided. Lost: the hold is posted, and what the wallet could not cover
comes from the tenant's chargeback losses account, linked in one chain; the payment is
labelled fraud for the risk models (`risk_labels`, source `chargeback_lost`, with the
payment's `risk_decision_id`). The claimant is
the payer's wallet (merchant and P2P payments) or the provider's clearing account
(top-ups: the card issuer takes the money back).
"""

from __future__ import annotations

import json
import uuid

from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer, TransferFlags
from billfold.payments.errors import DisputeNotFound, InvalidStateTransition, RefundExceedsCaptured
from billfold.payments.flows.common import apply_steps, chain, failure, load, now_ns, raise_for
from billfold.payments.models import Dispute
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.steps import applied, step_id
from billfold.risk.labels import LabelSource, record_label
from billfold.wallets.accounts import SystemRole, TransferCode, system_account_id
from billfold.wallets.service import ledger_tenant_of

__all__ = ["add_evidence", "drive_dispute", "open_dispute", "resolve_dispute"]

EVIDENCE_MAX = 20
_DISPUTABLE = ("succeeded", "captured", "partially_refunded", "refunded")


async def open_dispute(
    runtime: PaymentsRuntime,
    *,
    payment_id: uuid.UUID,
    amount: int,
    opened_by: str,
    reason: str | None,
    provider_dispute_id: str | None = None,
) -> str:
    """Open (or finish opening) a dispute; `applied`, or why not."""
    async with runtime.unit_of_work.begin() as session:
        repository = PaymentRepository(session)
        payment = await load(session, payment_id)
        dispute = None
        if provider_dispute_id is not None:
            dispute = await repository.dispute_by_provider_id(provider_dispute_id)
        if dispute is None:
            if payment.state not in _DISPUTABLE or payment.kind == "withdrawal":
                raise InvalidStateTransition(f"A {payment.state} payment cannot be disputed.")
            if amount > payment.captured_amount:
                raise RefundExceedsCaptured("A dispute cannot exceed what was paid.")
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


async def drive_dispute(runtime: PaymentsRuntime, dispute_id: uuid.UUID) -> str:
    """Place an opening dispute's hold and open it; safe to call again after a crash at
    any point (the hold's id is the dispute's: a re-driven hold is answered `exists`
    with the amount it holds). `applied`, or `duplicate` when it is opened already."""
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id)
        if dispute is None:
            raise InvariantViolation("a driven dispute exists")
        if dispute.state != "opening":
            return "duplicate"
        payment = await load(session, dispute.payment_id)
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
    held = (results[0].amount or 0) if applied(results) else 0
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_dispute(dispute.id)
        assert row is not None
        if row.state == "opening":
            row.state, row.held_amount, row.updated_at = "open", held, now_ns()
    return "applied"


async def add_evidence(
    runtime: PaymentsRuntime, *, dispute_id: uuid.UUID, kind: str, description: str
) -> Dispute:
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id)
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
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(dispute_id)
        if dispute is None:
            raise DisputeNotFound("No such dispute.")
        outcome = "won" if won else "lost"
        if dispute.state == outcome:
            return "duplicate"
        if dispute.state != "open":
            raise InvalidStateTransition(f"A {dispute.state} dispute cannot be {outcome}.")
        payment = await load(session, dispute.payment_id)
    steps = _resolution_steps(
        payment_tenant=ledger_tenant_of(payment.tenant_id, payment.mode),
        dispute=dispute,
        won=won,
        claimant=payment.debit_account_id,
        currency=payment.currency,
    )
    if steps:
        results = await apply_steps(runtime, payment.id, chain(steps))
        if not applied(results):
            raise_for(failure(results))
    async with runtime.unit_of_work.begin() as session:
        row = await PaymentRepository(session).get_dispute(dispute_id)
        assert row is not None
        row.state, row.updated_at = outcome, now_ns()
        if not won:
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

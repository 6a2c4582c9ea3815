"""Every query of payments, refunds, disputes, money requests and split rules."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import CursorResult, and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.errors import invariant
from billfold.kit.upsert import insert_if_absent
from billfold.payments.models import (
    Dispute,
    MoneyRequest,
    MonthlyVolume,
    Payment,
    PaymentFee,
    PaymentStateChange,
    PaymentTransfer,
    Refund,
    SplitRule,
)

__all__ = ["PaymentRepository"]

HISTORY_MAX = 500
OUTGOING_KINDS = ("withdrawal", "p2p", "merchant")
_NOT_SPENT = ("failed", "voided", "expired")
"""States whose payments no longer count toward the payer's limits. A merchant payment
`requires_payment` with a payer is being authorized by them: it counts, so concurrent
authorizations see each other."""
_CAPTURED = ("captured", "partially_refunded", "refunded")
"""States of a merchant payment whose capture is recorded: it spent `captured_amount`."""


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *rows: object) -> None:
        self._session.add_all(rows)
        await self._session.flush()

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None:
        statement = select(Payment).where(Payment.id == payment_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_scoped(
        self, *, tenant_id: uuid.UUID, mode: str, payment_id: uuid.UUID, for_update: bool = False
    ) -> Payment | None:
        payment = await self.get(payment_id, for_update=for_update)
        if payment is None or payment.tenant_id != tenant_id or payment.mode != mode:
            return None
        return payment

    async def history(self, payment_id: uuid.UUID) -> list[PaymentStateChange]:
        statement = (
            select(PaymentStateChange)
            .where(PaymentStateChange.payment_id == payment_id)
            .order_by(PaymentStateChange.id)
            .limit(HISTORY_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def entered_at(self, payment_id: uuid.UUID, state: str) -> int | None:
        """When the payment last entered `state` (ns; its history), None if it never did.
        Not `updated_at`, which recovery moves each time it asks the provider about a
        payment (`claim_reconciliation`), nor `created_at`: a top-up approved from risk
        review reaches its provider, and its challenge, long after it was made."""
        statement = select(func.max(PaymentStateChange.at)).where(
            PaymentStateChange.payment_id == payment_id, PaymentStateChange.to_state == state
        )
        at = (await self._session.execute(statement)).scalar_one()
        return None if at is None else int(at)

    async def record_transfers(self, payment_id: uuid.UUID, steps: dict[str, uuid.UUID]) -> None:
        now_ns = time.time_ns()
        for step, transfer_id in steps.items():
            await insert_if_absent(
                self._session,
                PaymentTransfer,
                {
                    "transfer_id": transfer_id,
                    "payment_id": payment_id,
                    "step": step,
                    "recorded_at": now_ns,
                },
            )

    async def transfers(self, payment_id: uuid.UUID) -> list[PaymentTransfer]:
        statement = (
            select(PaymentTransfer)
            .where(PaymentTransfer.payment_id == payment_id)
            .order_by(PaymentTransfer.recorded_at, PaymentTransfer.step)
            .limit(HISTORY_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def record_fee(self, fee: PaymentFee) -> None:
        await insert_if_absent(
            self._session,
            PaymentFee,
            {
                "transfer_id": fee.transfer_id,
                "payment_id": fee.payment_id,
                "rule": fee.rule,
                "description": fee.description,
                "amount": fee.amount,
                "currency": fee.currency,
                "fixed_amount": fee.fixed_amount,
            },
        )

    async def delete_fees(self, payment_id: uuid.UUID, transfer_ids: list[uuid.UUID]) -> None:
        """Forget fee lines recorded for transfers that never happened."""
        if transfer_ids:
            await self._session.execute(
                delete(PaymentFee).where(
                    PaymentFee.payment_id == payment_id, PaymentFee.transfer_id.in_(transfer_ids)
                )
            )

    async def fees(self, payment_id: uuid.UUID) -> list[PaymentFee]:
        statement = (
            select(PaymentFee)
            .where(PaymentFee.payment_id == payment_id)
            .order_by(PaymentFee.rule)
            .limit(HISTORY_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def refunds(self, payment_id: uuid.UUID) -> list[Refund]:
        statement = (
            select(Refund)
            .where(Refund.payment_id == payment_id)
            .order_by(Refund.id)
            .limit(HISTORY_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def fees_returned(self, payment_id: uuid.UUID) -> int:
        """The capture fees the payment's refunds not failed return (pending, in review
        or succeeded)."""
        statement = select(func.coalesce(func.sum(Refund.fee_returned), 0)).where(
            Refund.payment_id == payment_id, Refund.state != "failed"
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def get_refund(self, refund_id: uuid.UUID) -> Refund | None:
        return await self._session.get(Refund, refund_id)

    async def disputed_amount(self, payment_id: uuid.UUID) -> int:
        """What the payment's disputes not won claim back, in all (minor units)."""
        statement = select(func.coalesce(func.sum(Dispute.amount), 0)).where(
            Dispute.payment_id == payment_id, Dispute.state != "won"
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def claimed_for_good(self, payment_id: uuid.UUID) -> int:
        """What the payment gave back for good (minor units): its succeeded refunds, and
        its disputes lost or losing (a claimed outcome is completed, never exchanged).
        Refunds in flight may fail and open disputes may be won; these cannot."""
        refunded = select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.state == "succeeded"
        )
        lost = select(func.coalesce(func.sum(Dispute.amount), 0)).where(
            Dispute.payment_id == payment_id, Dispute.state.in_(("losing", "lost"))
        )
        execute = self._session.execute
        return int((await execute(refunded)).scalar_one()) + int((await execute(lost)).scalar_one())

    async def disputes(self, payment_id: uuid.UUID) -> list[Dispute]:
        statement = (
            select(Dispute)
            .where(Dispute.payment_id == payment_id)
            .order_by(Dispute.id)
            .limit(HISTORY_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def get_dispute(
        self, dispute_id: uuid.UUID, *, for_update: bool = False
    ) -> Dispute | None:
        """A dispute; `for_update` locks its row until commit (PostgreSQL), so concurrent
        resolutions of one dispute are decided one after the other."""
        statement = select(Dispute).where(Dispute.id == dispute_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def dispute_by_provider_id(self, provider_dispute_id: str) -> Dispute | None:
        statement = select(Dispute).where(Dispute.provider_dispute_id == provider_dispute_id)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_request(
        self, request_id: uuid.UUID, *, for_update: bool = False
    ) -> MoneyRequest | None:
        """A money request; `for_update` locks its row until commit (PostgreSQL), so
        concurrent answers to one request are decided one after the other."""
        statement = select(MoneyRequest).where(MoneyRequest.id == request_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_split_rule(
        self, *, tenant_id: uuid.UUID, mode: str, rule_id: uuid.UUID
    ) -> SplitRule | None:
        rule = await self._session.get(SplitRule, rule_id)
        if rule is None or rule.tenant_id != tenant_id or rule.mode != mode:
            return None
        return rule

    async def spent_since(
        self,
        *,
        user_id: uuid.UUID,
        currency: str,
        since_ns: int,
        excluding: uuid.UUID | None = None,
    ) -> int:
        """What the user spent in `currency` since `since_ns` (by `spent_at`), counting
        movements in flight and authorizations under way, but not the payment `excluding`
        (a retried authorization is not counted against itself)."""
        # A captured merchant payment spent what was captured: a partial capture released
        # the rest of its hold back to the payer, and to their limits.
        spent = case((Payment.state.in_(_CAPTURED), Payment.captured_amount), else_=Payment.amount)
        statement = select(func.coalesce(func.sum(spent), 0)).where(
            Payment.payer_user_id == user_id,
            Payment.spent_at >= since_ns,
            Payment.currency == currency,
            Payment.kind.in_(OUTGOING_KINDS),
            Payment.state.not_in(_NOT_SPENT),
        )
        if excluding is not None:
            statement = statement.where(Payment.id != excluding)
        return int((await self._session.execute(statement)).scalar_one())

    async def stuck_p2p(self, *, created_before_ns: int, limit: int) -> list[uuid.UUID]:
        """P2P payments still `created` (a crash between their steps), oldest first."""
        statement = (
            select(Payment.id)
            .where(
                Payment.kind == "p2p",
                Payment.state == "created",
                Payment.created_at < created_before_ns,
            )
            .order_by(Payment.created_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def stuck_refunds(self, *, created_before_ns: int, limit: int) -> list[uuid.UUID]:
        """Refunds still `pending` (a crash between their steps), oldest first."""
        statement = (
            select(Refund.id)
            .where(Refund.state == "pending", Refund.created_at < created_before_ns)
            .order_by(Refund.created_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def stuck_captures(self, *, claimed_before_ns: int, limit: int) -> list[uuid.UUID]:
        """Authorized merchant payments whose capture was claimed before
        `claimed_before_ns` and not recorded (a crash between the claim and the record),
        oldest claim first."""
        statement = (
            select(Payment.id)
            .where(
                Payment.capture_claim.is_not(None),
                Payment.capture_claimed_at < claimed_before_ns,
                Payment.state == "authorized",
            )
            .order_by(Payment.capture_claimed_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def stuck_disputes(self, *, created_before_ns: int, limit: int) -> list[uuid.UUID]:
        """Disputes still `opening`, or `winning`/`losing` (a crash between their steps),
        since before `created_before_ns`, oldest first."""
        statement = (
            select(Dispute.id)
            .where(
                Dispute.state.in_(("opening", "winning", "losing")),
                Dispute.updated_at < created_before_ns,
            )
            .order_by(Dispute.updated_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def add_volume(
        self,
        *,
        ledger_tenant_id: uuid.UUID,
        scope: str,
        currency: str,
        month: str,
        shard: int,
        amount: int,
    ) -> None:
        """Add `amount` to one shard of a month's volume (the row is made on first use;
        concurrent adds to one shard are serialized by the row lock the UPDATE takes)."""
        key = {
            "ledger_tenant_id": ledger_tenant_id,
            "scope": scope,
            "currency": currency,
            "month": month,
            "shard": shard,
        }
        await insert_if_absent(self._session, MonthlyVolume, {**key, "volume": 0})
        await self._session.execute(
            update(MonthlyVolume)
            .where(*(getattr(MonthlyVolume, name) == value for name, value in key.items()))
            .values(volume=MonthlyVolume.volume + amount)
        )

    async def volume(
        self, *, ledger_tenant_id: uuid.UUID, scope: str, currency: str, month: str
    ) -> int:
        """A month's volume so far: the sum of its shards (a primary-key prefix scan)."""
        statement = select(func.coalesce(func.sum(MonthlyVolume.volume), 0)).where(
            MonthlyVolume.ledger_tenant_id == ledger_tenant_id,
            MonthlyVolume.scope == scope,
            MonthlyVolume.currency == currency,
            MonthlyVolume.month == month,
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def stuck(
        self, *, kind: str, state: str, created_before_ns: int, limit: int
    ) -> list[uuid.UUID]:
        """Payments of `kind` still in `state` since before `created_before_ns`, oldest
        first (the index on state and creation time finds them)."""
        statement = (
            select(Payment.id)
            .where(
                Payment.state == state,
                Payment.kind == kind,
                Payment.created_at < created_before_ns,
            )
            .order_by(Payment.created_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def unanswered(
        self, *, created_before_ns: int, limit: int
    ) -> list[tuple[uuid.UUID, str]]:
        """Processing top-ups and withdrawals the provider never answered (no reference)
        that entered `processing` before `created_before_ns`, with their kind, oldest first.
        Aged by that state change (`updated_at`), not by creation: a withdrawal approved
        from risk review an hour after it was made enters `processing` and calls its
        provider then, and must not look abandoned while that call is in flight."""
        statement = (
            select(Payment.id, Payment.kind)
            .where(
                Payment.state == "processing",
                Payment.kind.in_(("top_up", "withdrawal")),
                Payment.provider_reference.is_(None),
                Payment.updated_at < created_before_ns,
            )
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in await self._session.execute(statement)]

    async def awaiting_outcome(
        self, *, waiting_since_ns: int, limit: int
    ) -> list[tuple[uuid.UUID, str]]:
        """Top-ups and withdrawals the provider answered without an outcome (`processing`
        with a provider reference, or a top-up's `requires_action`) whose `updated_at` —
        when they entered that state, or when recovery last asked the provider about them
        (`claim_reconciliation`) — is before `waiting_since_ns`, with their kind, longest
        waiting first. Disjoint from `unanswered` (no reference) and `held` (`in_review`)."""
        statement = (
            select(Payment.id, Payment.kind)
            .where(
                Payment.state.in_(("processing", "requires_action")),
                Payment.kind.in_(("top_up", "withdrawal")),
                or_(
                    and_(Payment.state == "processing", Payment.provider_reference.is_not(None)),
                    and_(Payment.state == "requires_action", Payment.kind == "top_up"),
                ),
                Payment.updated_at < waiting_since_ns,
            )
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in await self._session.execute(statement)]

    async def claim_reconciliation(
        self, payment_id: uuid.UUID, *, state: str, waiting_since_ns: int, now_ns: int
    ) -> bool:
        """Mark the payment asked about now (its `updated_at`), if it is still in `state`
        and was neither asked about nor changed since `waiting_since_ns`; whether it was
        (False: another process claimed it, or it moved on). One claim per payment per
        reconciliation age, in however many processes recovery runs."""
        result = await self._session.execute(
            update(Payment)
            .where(
                Payment.id == payment_id,
                Payment.state == state,
                Payment.updated_at < waiting_since_ns,
            )
            .values(updated_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def lapsed_authorizations(self, *, now_ns: int, limit: int) -> list[uuid.UUID]:
        """Authorized merchant payments whose hold is past its expiry, soonest first."""
        statement = (
            select(Payment.id)
            .where(
                Payment.state == "authorized",
                Payment.authorization_expires_at <= now_ns,
            )
            .order_by(Payment.authorization_expires_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def stale_claims(self, *, claimed_before_ns: int, limit: int) -> list[uuid.UUID]:
        """Merchant payments still `requires_payment` whose payer was claimed (limit
        checked) before `claimed_before_ns` and whose authorization never finished,
        oldest claim first."""
        statement = (
            select(Payment.id)
            .where(
                Payment.state == "requires_payment",
                Payment.kind == "merchant",
                Payment.payer_user_id.is_not(None),
                Payment.spent_at < claimed_before_ns,
            )
            .order_by(Payment.spent_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def lapsed_unpaid(self, *, now_ns: int, limit: int) -> list[uuid.UUID]:
        """Merchant payments still awaiting their payer after their expiry."""
        statement = (
            select(Payment.id)
            .where(Payment.state == "requires_payment", Payment.expires_at <= now_ns)
            .order_by(Payment.expires_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def held(self, *, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """Payments held for risk review (`in_review`), with their tenant and mode,
        longest held first."""
        statement = (
            select(Payment.id, Payment.tenant_id, Payment.mode)
            .where(Payment.state == "in_review")
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return [(row[0], row[1], row[2]) for row in await self._session.execute(statement)]

    async def held_refunds(self, *, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """Refunds held for risk review, with their payment's tenant and mode."""
        statement = (
            select(Refund.id, Payment.tenant_id, Payment.mode)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.state == "in_review")
            .order_by(Refund.created_at)
            .limit(limit)
        )
        return [(row[0], row[1], row[2]) for row in await self._session.execute(statement)]


def _rowcount(result: Any) -> int:
    # An UPDATE returns a CursorResult; its rowcount says whether the condition held.
    invariant(isinstance(result, CursorResult), "a write statement returns a CursorResult")
    return int(result.rowcount)

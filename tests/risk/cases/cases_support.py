"""Helpers for the review queue's tests: a held movement made for real (a funded wallet
account and a pending ledger transfer out of it), its decision and case, and a resolver
that posts or voids that pending transfer in the ledger, as payments' will."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.kit.ids import new_id, parse_id
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewAccount, NewTransfer, TransferFlags
from billfold.risk.models import RiskDecision
from billfold.risk.reviews import open_case
from billfold.risk.types import Action, Decision, Movement, MovementKind, Response
from billfold.wallets.accounts import OwnerKind, wallet_account
from billfold.wallets.models import Wallet
from billfold.wallets.service import ledger_tenant_of
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import with_ledger

HOLD_NAMESPACE = uuid.UUID("6d1f1c39-92a4-4a8e-9f1e-8f1f2e3d4c5b")
_APPLIED = (CreateTransferStatus.OK, CreateTransferStatus.EXISTS)
FUNDING = 1_000_000


def pending_id(reference: str) -> uuid.UUID:
    return uuid.uuid5(HOLD_NAMESPACE, f"hold:{reference}")


class LedgerResolver:
    """Posts or voids a held movement's pending transfer in the real ledger, idempotently
    (the post's or void's id is derived from the reference). ``failures`` makes the next
    calls raise before touching the ledger: a provider outage, a crash."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.failures = 0
        self.calls = 0

    async def resolve(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: str,
        reference: str,
        approve: bool,
        expired: bool = False,
    ) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the ledger is out of reach")
        verb = "post" if approve else "void"
        transfer = NewTransfer(
            id=uuid.uuid5(HOLD_NAMESPACE, f"{verb}:{reference}"),
            tenant_id=ledger_tenant_of(tenant_id, mode),
            pending_id=pending_id(reference),
            flags=int(TransferFlags.POST_PENDING if approve else TransferFlags.VOID_PENDING),
        )
        [result] = await self.ledger.create_transfers([transfer])
        if result.status not in _APPLIED:
            raise RuntimeError(f"the hold could not be {verb}ed: {result.status.value}")


@dataclass(frozen=True, slots=True)
class Holder:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    payee_id: uuid.UUID


def funded_holder(database_url: str, *, tenant_id: uuid.UUID, user: str) -> Holder:
    """The end user's USD wallet (a wallets row and its ledger account), funded with
    FUNDING, and a payee account."""
    user_id = parse_id("usr", user)
    ledger_tenant = ledger_tenant_of(tenant_id, Mode.TEST)
    wallet = wallet_account(
        ledger_tenant, owner_kind=OwnerKind.USER, owner_id=user_id, currency="USD"
    )
    source, payee = uuid.uuid4(), uuid.uuid4()

    async def ledger_side(ledger: Ledger) -> None:
        others = [
            NewAccount(id=i, tenant_id=ledger_tenant, ledger="USD", code=9) for i in (source, payee)
        ]
        results = await ledger.create_accounts([wallet, *others])
        assert all(result.status.value == "ok" for result in results)
        [funded] = await ledger.create_transfers(
            [
                NewTransfer(
                    id=uuid.uuid4(),
                    tenant_id=ledger_tenant,
                    debit_account_id=source,
                    credit_account_id=wallet.id,
                    amount=FUNDING,
                    ledger="USD",
                    code=101,
                )
            ]
        )
        assert funded.status is CreateTransferStatus.OK

    with_ledger(database_url, ledger_side)

    async def add(session: AsyncSession) -> None:
        session.add(
            Wallet(
                id=wallet.id,
                tenant_id=tenant_id,
                mode="test",
                owner_kind="user",
                owner_id=user_id,
                currency="USD",
                created_at=time.time_ns(),
            )
        )

    run_in_unit_of_work(database_url, add)
    return Holder(tenant_id=tenant_id, user_id=user_id, wallet_id=wallet.id, payee_id=payee)


def decision_for(
    movement: Movement, *, responses: tuple[Response, ...] = (), action: Action = Action.REVIEW
) -> Decision:
    return Decision(
        id=new_id(),
        action=action,
        score=720,
        reasons=("amount 9x the user's usual", "new payee"),
        features={"amount_zscore": 9.1, "new_payee": True, "velocity_count_1h": 4},
        responses=responses,
    )


async def store_decision(session: AsyncSession, decision: Decision, movement: Movement) -> None:
    """The decision row as the engine stores it (what a case shows)."""
    session.add(
        RiskDecision(
            id=decision.id,
            tenant_id=movement.tenant_id,
            mode=movement.mode,
            kind=movement.kind.value,
            reference=movement.reference,
            user_id=movement.user_id,
            payee=movement.payee,
            merchant_id=None,
            device_id=None,
            amount=movement.amount,
            currency=movement.currency,
            action=decision.action.value,
            score=decision.score,
            reasons=json.dumps(list(decision.reasons)),
            features=json.dumps(dict(decision.features)),
            hits="[]",
            model_score=None,
            ruleset_version=3,
            created_at=movement.occurred_at_ns,
        )
    )
    await session.flush()


def held_movement(
    database_url: str,
    holder: Holder,
    *,
    amount: int,
    kind: MovementKind = MovementKind.P2P,
    opened_at_ns: int | None = None,
    hold_expires_at_ns: int | None = None,
) -> tuple[str, uuid.UUID]:
    """A movement held for review: a pending transfer out of the holder's wallet, its
    decision and its case. Returns (reference, case id)."""
    reference = f"pay_{uuid.uuid4().hex}"
    ledger_tenant = ledger_tenant_of(holder.tenant_id, Mode.TEST)

    async def hold(ledger: Ledger) -> None:
        [result] = await ledger.create_transfers(
            [
                NewTransfer(
                    id=pending_id(reference),
                    tenant_id=ledger_tenant,
                    debit_account_id=holder.wallet_id,
                    credit_account_id=holder.payee_id,
                    amount=amount,
                    ledger="USD",
                    code=103,
                    flags=int(TransferFlags.PENDING),
                )
            ]
        )
        assert result.status is CreateTransferStatus.OK

    with_ledger(database_url, hold)
    now_ns = opened_at_ns if opened_at_ns is not None else time.time_ns()
    movement = Movement(
        tenant_id=holder.tenant_id,
        mode="test",
        kind=kind,
        amount=amount,
        currency="USD",
        occurred_at_ns=now_ns,
        user_id=holder.user_id,
        payee=f"usr_{uuid.uuid4().hex}",
        reference=reference,
    )
    decision = decision_for(movement)

    async def record(session: AsyncSession) -> uuid.UUID:
        await store_decision(session, decision, movement)
        return await open_case(
            session,
            decision=decision,
            movement=movement,
            reference=reference,
            hold_expires_at_ns=hold_expires_at_ns or now_ns + 7 * 86_400 * 10**9,
            at_ns=now_ns,
        )

    return reference, run_in_unit_of_work(database_url, record)


def wallet_balances(database_url: str, holder: Holder) -> dict[str, int]:
    """The wallet's and the payee's balances, read through a ledger of its own."""

    async def read(ledger: Ledger) -> dict[str, int]:
        wallet, payee = await ledger.lookup_accounts(
            tenant_id=ledger_tenant_of(holder.tenant_id, Mode.TEST),
            ids=[holder.wallet_id, holder.payee_id],
        )
        return {
            "wallet_pending": wallet.debits_pending,
            "wallet_posted": wallet.debits_posted,
            "payee_posted": payee.credits_posted,
        }

    return with_ledger(database_url, read)


def account_status(database_url: str, holder: Holder) -> str:
    async def read(ledger: Ledger) -> str:
        [wallet] = await ledger.lookup_accounts(
            tenant_id=ledger_tenant_of(holder.tenant_id, Mode.TEST), ids=[holder.wallet_id]
        )
        return wallet.status.value

    return with_ledger(database_url, read)

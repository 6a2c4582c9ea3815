"""Deciding requests at the flow level, on both backends: concurrent decisions (exactly one
wins), expiry, and an interrupted approval finished later without moving money twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from billfold.flows.approvals import approval_executors
from billfold.identity import service as identity_service
from billfold.identity.operators import approvals, flows, service
from billfold.identity.operators.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    SelfApprovalForbidden,
)
from billfold.identity.operators.executors import ApprovalExecutors
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.operators.types import Actor, OperatorPrincipal
from billfold.kit.clock import ManualClock, SystemClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import BillfoldError
from billfold.kit.ids import format_id
from billfold.ledger.ledger import Ledger
from conftest import open_ledger
from identity.operators.operators_support import (
    FAST_PASSWORDS,
    PASSWORD,
    balances,
    open_accounts,
)

pytestmark = pytest.mark.anyio
ROUNDS = 6


@dataclass
class Desk:
    """A unit of work, a ledger, the executors over it, and one tenant with operators."""

    unit_of_work: UnitOfWork
    ledger: Ledger
    executors: ApprovalExecutors
    tenant_id: uuid.UUID

    async def operator(self, *roles: Role) -> OperatorPrincipal:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        async with self.unit_of_work.begin() as session:
            await service.create_operator(
                session,
                tenant_id=self.tenant_id,
                email=email,
                display_name="Operator",
                roles=roles,
                password=PASSWORD,
                actor=Actor.system(),
                now_ns=SystemClock().now_ns(),
                passwords=FAST_PASSWORDS,
            )
        async with self.unit_of_work.begin() as session:
            login = await service.log_in(
                session,
                tenant_id=self.tenant_id,
                email=email,
                password=PASSWORD,
                now_ns=SystemClock().now_ns(),
                passwords=FAST_PASSWORDS,
            )
        assert login is not None
        async with self.unit_of_work.begin() as session:
            return await service.verify_session(
                session, token=login.token, now_ns=SystemClock().now_ns()
            )

    async def adjustment(
        self, requester: OperatorPrincipal, debit: uuid.UUID, credit: uuid.UUID, *, clock: object
    ) -> ApprovalRequest:
        return await flows.request_approval(
            self.unit_of_work,
            self.executors,
            principal=requester,
            action_type=ActionType.LEDGER_ADJUSTMENT,
            payload={
                "mode": "test",
                "debit_account_id": format_id("acc", debit),
                "credit_account_id": format_id("acc", credit),
                "amount": 100,
                "asset": "USD",
            },
            reason="Correction",
            expires_in_s=None,
            clock=clock,  # type: ignore[arg-type]
        )


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[Desk]:
    engine = create_engine(parse_database_url(database_url), pool_size=4)
    ledger = await open_ledger(database_url, ledger_batch_window_ms=0)
    unit_of_work = UnitOfWork(engine)
    try:
        async with unit_of_work.begin() as session:
            tenant = await identity_service.create_tenant(
                session, name="Desk", now_ns=SystemClock().now_ns()
            )
        yield Desk(unit_of_work, ledger, approval_executors(ledger), tenant.id)
    finally:
        await ledger.close()
        await engine.dispose()


async def _decide(
    desk: Desk, who: OperatorPrincipal, approval_id: uuid.UUID, *, approve: bool
) -> ApprovalRequest | BillfoldError:
    try:
        return await flows.decide_approval(
            desk.unit_of_work,
            desk.executors,
            principal=who,
            approval_id=approval_id,
            approve=approve,
            note="decided",
            clock=SystemClock(),
        )
    except BillfoldError as error:
        return error


async def test_concurrent_approve_and_refuse_exactly_one_wins(desk: Desk) -> None:
    requester = await desk.operator(Role.FINANCE)
    approver = await desk.operator(Role.FINANCE)
    refuser = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    approvals_won = 0
    for _ in range(ROUNDS):
        request = await desk.adjustment(requester, debit, credit, clock=SystemClock())
        outcomes = await asyncio.gather(
            _decide(desk, approver, request.id, approve=True),
            _decide(desk, refuser, request.id, approve=False),
        )
        decided = [o for o in outcomes if isinstance(o, ApprovalRequest)]
        lost = [o for o in outcomes if isinstance(o, BillfoldError)]
        assert len(decided) == 1, outcomes
        assert len(lost) == 1 and isinstance(lost[0], ApprovalAlreadyDecided), outcomes
        assert decided[0].status in ("executed", "refused")
        approvals_won += decided[0].status == "executed"
    # Money moved once per approval that won, never for a refusal that won.
    moved = 100 * approvals_won
    assert await balances(desk.ledger, tenant_id=desk.tenant_id, ids=[debit, credit]) == [
        (moved, 0),
        (0, moved),
    ]


async def test_concurrent_approvals_move_money_once(desk: Desk) -> None:
    requester = await desk.operator(Role.FINANCE)
    approvers = [await desk.operator(Role.FINANCE) for _ in range(3)]
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    request = await desk.adjustment(requester, debit, credit, clock=SystemClock())
    outcomes = await asyncio.gather(
        *(_decide(desk, approver, request.id, approve=True) for approver in approvers)
    )
    assert sum(isinstance(o, ApprovalRequest) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, ApprovalAlreadyDecided) for o in outcomes) == 2, outcomes
    assert await balances(desk.ledger, tenant_id=desk.tenant_id, ids=[debit, credit]) == [
        (100, 0),
        (0, 100),
    ]


async def test_an_expired_request_cannot_be_decided_and_executes_nothing(desk: Desk) -> None:
    requester = await desk.operator(Role.FINANCE)
    approver = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    clock = ManualClock(start_ns=SystemClock().now_ns())
    request = await desk.adjustment(requester, debit, credit, clock=clock)
    clock.advance(seconds=approvals.EXPIRY_DEFAULT_S)  # exactly at expires_at: too late
    for approve in (True, False):
        with pytest.raises(ApprovalExpired):
            await flows.decide_approval(
                desk.unit_of_work,
                desk.executors,
                principal=approver,
                approval_id=request.id,
                approve=approve,
                note="too late",
                clock=clock,
            )
    async with desk.unit_of_work.begin() as session:
        stored = await approvals.get_approval(session, principal=approver, approval_id=request.id)
        assert stored.status == "expired"
        assert stored.decided_by is None
    assert await balances(desk.ledger, tenant_id=desk.tenant_id, ids=[debit, credit]) == [
        (0, 0),
        (0, 0),
    ]


async def test_the_expiry_sweep_marks_only_requests_past_their_time(desk: Desk) -> None:
    requester = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    clock = ManualClock(start_ns=SystemClock().now_ns())
    old = await desk.adjustment(requester, debit, credit, clock=clock)
    clock.advance(seconds=3600)
    young = await desk.adjustment(requester, debit, credit, clock=clock)
    clock.advance(seconds=approvals.EXPIRY_DEFAULT_S - 1800)
    assert await flows.expire_due_approvals(desk.unit_of_work, clock=clock, limit=1000) >= 1
    async with desk.unit_of_work.begin() as session:
        states = [
            (await approvals.get_approval(session, principal=requester, approval_id=i)).status
            for i in (old.id, young.id)
        ]
    assert states == ["expired", "pending"]


async def test_an_interrupted_approval_is_finished_later_without_moving_money_twice(
    desk: Desk,
) -> None:
    requester = await desk.operator(Role.FINANCE)
    approver = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    request = await desk.adjustment(requester, debit, credit, clock=SystemClock())
    # Step 1 only, as if the process died right after committing the decision.
    async with desk.unit_of_work.begin() as session:
        decision = await approvals.decide(
            session,
            principal=approver,
            approval_id=request.id,
            approve=True,
            note=None,
            now_ns=SystemClock().now_ns(),
        )
    assert decision.approval is not None and decision.approval.status == "approved"
    # And as if step 2 ran too, but step 3 never recorded it.
    await desk.executors.external[ActionType.LEDGER_ADJUSTMENT].execute(
        _approved_action(decision.approval)
    )
    later = SystemClock().now_ns() + 1
    resumed = await flows.resume_interrupted(
        desk.unit_of_work, desk.executors, decided_before_ns=later, clock=SystemClock()
    )
    again = await flows.resume_interrupted(
        desk.unit_of_work, desk.executors, decided_before_ns=later, clock=SystemClock()
    )
    assert resumed >= 1
    assert again == 0
    async with desk.unit_of_work.begin() as session:
        stored = await approvals.get_approval(session, principal=approver, approval_id=request.id)
    assert stored.status == "executed"
    assert await balances(desk.ledger, tenant_id=desk.tenant_id, ids=[debit, credit]) == [
        (100, 0),
        (0, 100),
    ]


async def test_the_database_refuses_a_decider_who_is_the_requester(desk: Desk) -> None:
    requester = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    request = await desk.adjustment(requester, debit, credit, clock=SystemClock())
    with pytest.raises(SelfApprovalForbidden):
        await flows.decide_approval(
            desk.unit_of_work,
            desk.executors,
            principal=requester,
            approval_id=request.id,
            approve=True,
            note=None,
            clock=SystemClock(),
        )
    # Even a write that skips the service is refused by the CHECK constraint.
    with pytest.raises(Exception, match=r"decider_is_not_requester|CHECK constraint"):
        await _self_decide_behind_the_service(desk, request.id, requester.operator_id)


async def _self_decide_behind_the_service(
    desk: Desk, approval_id: uuid.UUID, operator_id: uuid.UUID
) -> None:
    async with desk.unit_of_work.begin() as session:
        row = await session.get(ApprovalRequest, approval_id)
        assert row is not None
        row.decided_by = operator_id
        row.status = "approved"
        await session.flush()


def _approved_action(approval: ApprovalRequest) -> object:
    from billfold.identity.operators.executors import ApprovedAction

    return ApprovedAction.from_row(approval)


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "refuse"])
async def test_a_decider_demoted_after_signing_in_decides_nothing(
    desk: Desk, approve: bool
) -> None:
    """The decider's permissions came with its session: a role change that commits while
    its decision is in flight must still count (the row is read, locked, at the decision)."""
    requester = await desk.operator(Role.FINANCE)
    decider = await desk.operator(Role.FINANCE)
    debit, credit = await open_accounts(desk.ledger, tenant_id=desk.tenant_id, count=2)
    request = await desk.adjustment(requester, debit, credit, clock=SystemClock())
    async with desk.unit_of_work.begin() as session:
        await service.set_operator_roles(
            session,
            principal=None,
            tenant_id=desk.tenant_id,
            operator_id=decider.operator_id,
            roles=[Role.SUPPORT],
            actor=Actor.system(),
            now_ns=SystemClock().now_ns(),
        )
    outcome = await _decide(desk, decider, request.id, approve=approve)  # the stale session
    assert isinstance(outcome, BillfoldError)
    assert (outcome.status, outcome.code) == (403, "permission_denied")
    async with desk.unit_of_work.begin() as session:
        stored = await approvals.get_approval(session, principal=requester, approval_id=request.id)
    assert (stored.status, stored.decided_by) == ("pending", None)
    assert await balances(desk.ledger, tenant_id=desk.tenant_id, ids=[debit, credit]) == [
        (0, 0),
        (0, 0),
    ]

"""Approval requests over a unit of work: asking, deciding, executing exactly once.

Deciding is one unit of work: the conditional UPDATE that claims the request, its security
event and, for a transactional executor, the effect and the ``executed`` status, all commit
together or not at all.

An external executor (the ledger) cannot join that transaction, so approval runs in three
steps, each safe to repeat:

1. claim ``pending → approved`` and commit (exactly one concurrent decision wins);
2. execute, idempotently on the approval id (the ledger transfer's id *is* the approval
   id, so a retry finds it ``exists`` instead of moving money again);
3. record ``approved → executed`` (or ``failed``) with the outcome, conditionally, once.

A crash between 1 and 3 leaves the request ``approved``; :func:`resume_interrupted` (for a
periodic worker) drives such requests to the end, and repeating step 2 is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from billfold.identity.operators import approvals
from billfold.identity.operators.errors import ApprovalExecutorUnavailable
from billfold.identity.operators.executors import ApprovalExecutors, ApprovedAction
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.payloads import canonical_payload
from billfold.identity.operators.permissions import ACTION_PERMISSIONS, ActionType
from billfold.identity.operators.repository import ApprovalRepository
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant

__all__ = [
    "RESUMED_PER_SWEEP_MAX",
    "decide_approval",
    "execute_approved",
    "expire_due_approvals",
    "request_approval",
    "resume_interrupted",
]

RESUMED_PER_SWEEP_MAX = 100


async def request_approval(
    unit_of_work: UnitOfWork,
    executors: ApprovalExecutors,
    *,
    principal: OperatorPrincipal,
    action_type: ActionType,
    payload: Mapping[str, Any],
    reason: str,
    expires_in_s: int | None,
    clock: Clock,
) -> ApprovalRequest:
    """A pending request, after the action's executor found it executable as it stands
    (its check, if it has one, raised nothing; a refusal stores nothing)."""
    # First, so a caller without the right learns nothing from the checks below.
    approvals.require_permission(principal, ACTION_PERMISSIONS[action_type].request)
    if not executors.supports(action_type):
        raise ApprovalExecutorUnavailable(f"No executor for {action_type.value} is installed.")
    canonical = canonical_payload(action_type, payload)  # the checks read canonical JSON
    external = executors.external.get(action_type)
    if external is not None:
        await external.check(
            tenant_id=principal.tenant_id, action_type=action_type, payload=canonical
        )
    check = executors.checks.get(action_type)
    async with unit_of_work.begin() as session:
        if check is not None:  # before the request and its security event are added
            await check.check(
                session, tenant_id=principal.tenant_id, action_type=action_type, payload=canonical
            )
        return await approvals.create_approval_request(
            session,
            principal=principal,
            action_type=action_type,
            payload=payload,
            reason=reason,
            expires_in_s=expires_in_s,
            now_ns=clock.now_ns(),
        )


async def decide_approval(
    unit_of_work: UnitOfWork,
    executors: ApprovalExecutors,
    *,
    principal: OperatorPrincipal,
    approval_id: uuid.UUID,
    approve: bool,
    note: str | None,
    clock: Clock,
) -> ApprovalRequest:
    """Approve (and execute) or refuse a request; raises the decision's error, if any,
    after committing what the failed attempt must leave (an expiry)."""
    if approve:
        async with unit_of_work.begin() as session:
            seen = await approvals.get_approval(
                session, principal=principal, approval_id=approval_id
            )
        # Checked before claiming: a request approved here must be executable here. (Only
        # for a caller who could approve it; any other gets its 403 from the decision.)
        action_type = ActionType(seen.action_type)
        may_approve = ACTION_PERMISSIONS[action_type].approve in principal.permissions
        if may_approve and not executors.supports(action_type):
            raise ApprovalExecutorUnavailable(f"No executor for {seen.action_type} is installed.")
    async with unit_of_work.begin() as session:
        now_ns = clock.now_ns()
        decision = await approvals.decide(
            session,
            principal=principal,
            approval_id=approval_id,
            approve=approve,
            note=note,
            now_ns=now_ns,
        )
        approval = decision.approval
        if approval is not None and approve:
            transactional = executors.transactional.get(ActionType(approval.action_type))
            if transactional is not None:
                outcome = await transactional.execute(session, ApprovedAction.from_row(approval))
                approval = await approvals.finish_execution(
                    session, approval_id=approval.id, outcome=outcome, now_ns=now_ns
                )
    if decision.error is not None:
        raise decision.error
    invariant(approval is not None, "a decision without an error has its request")
    assert approval is not None  # for mypy; the invariant holds under -O
    if approval.status == "approved":
        return await execute_approved(unit_of_work, executors, approval=approval, clock=clock)
    return approval


async def execute_approved(
    unit_of_work: UnitOfWork,
    executors: ApprovalExecutors,
    *,
    approval: ApprovalRequest,
    clock: Clock,
) -> ApprovalRequest:
    """Steps 2 and 3 for an approved request with an external executor."""
    invariant(approval.status == "approved", "only an approved request is executed")
    external = executors.external.get(ActionType(approval.action_type))
    if external is None:
        raise ApprovalExecutorUnavailable(f"No executor for {approval.action_type} is installed.")
    outcome = await external.execute(ApprovedAction.from_row(approval))
    async with unit_of_work.begin() as session:
        return await approvals.finish_execution(
            session, approval_id=approval.id, outcome=outcome, now_ns=clock.now_ns()
        )


async def resume_interrupted(
    unit_of_work: UnitOfWork,
    executors: ApprovalExecutors,
    *,
    decided_before_ns: int,
    clock: Clock,
    limit: int = RESUMED_PER_SWEEP_MAX,
) -> int:
    """Finish approved requests whose execution was interrupted (decided before
    ``decided_before_ns``, so requests executing right now are left alone). Returns how
    many were finished. Meant for a periodic worker."""
    invariant(1 <= limit <= RESUMED_PER_SWEEP_MAX, "a sweep is bounded")
    async with unit_of_work.begin() as session:
        stuck = await ApprovalRepository(session).approved_unfinished(
            decided_before_ns=decided_before_ns, limit=limit
        )
    finished = 0
    for approval in stuck:
        if ActionType(approval.action_type) in executors.external:
            await execute_approved(unit_of_work, executors, approval=approval, clock=clock)
            finished += 1
    return finished


async def expire_due_approvals(unit_of_work: UnitOfWork, *, clock: Clock, limit: int) -> int:
    """Mark pending requests past their time as expired; for a periodic worker."""
    async with unit_of_work.begin() as session:
        return await approvals.expire_due(session, now_ns=clock.now_ns(), limit=limit)

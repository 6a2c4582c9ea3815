"""The review queue and automated responses across domains: deciding a case moves the
held money (through the installed :class:`~billfold.risk.cases.resolver.HeldMovementResolver`),
a ``freeze_account`` response freezes ledger accounts, and a four-eyes approved reversal
undoes a response.

**Deciding a case** runs in two steps, each safe to repeat:

1. one transaction claims the case (``open → approved | rejected``, ``resolved_by/at``),
   writes its resolution ``pending``, the analyst's label, the note and an audit entry;
2. the resolver posts (approve) or voids (reject) the held movement, idempotently; then
   the resolution is marked ``settled``.

Until step 2 succeeds the case shows as ``resolving``: it never looks settled while money
is still held. A resolver failure is recorded on the resolution (``attempts``,
``last_error``) and the case stays ``resolving``; :func:`recover` (a periodic worker loop)
calls the resolver again for resolutions older than a grace period, up to
``RESOLVE_ATTEMPTS_MAX`` times (then an operator must look: the case stays resolving).
Open cases past ``hold_expires_at`` are expired the same way (claimed ``expired`` with
their resolution and a ``risk.case.expired`` audit entry, then voided), by
``risk.cases.settlement.expire_due``: the one expiry path, which payments' recovery loop
takes too, so an analyst's approval and an expiry never both win. An approval refused
``case_hold_expired`` expires its case at once on that path
(``settlement.expire_case``), instead of leaving it open until the sweep comes.

**Freezing** (``freeze_account``): the response row is written in the movement's
transaction (``risk.cases.responses.apply_responses``); after it commits,
:func:`enforce_responses` freezes the user's wallet accounts in the ledger, recording
*before* each freeze which accounts this response froze, so a crash in between neither
loses the record nor unfreezes an account someone else froze. :func:`recover` enforces what
a crash left pending.

**Reversing** a response: :func:`request_reversal` marks it ``reversing`` and asks for a
``risk_response_reversal`` approval in one transaction (a request at ``POST /v1/approvals``
does the same through :class:`RiskResponseReversalCheck`); once a different operator approves,
:class:`RiskResponseReversalExecutor` (an external executor: it acts on the ledger) unfreezes
exactly the accounts the response froze (not those another freeze in force still covers),
lifts its limit reduction, and marks it ``reversed`` with an audit entry. Executing again is
harmless: a reversed response is left as it is. The approvals flow resumes an approval
interrupted after its decision (``identity.operators.flows.resume_interrupted``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators import approvals
from billfold.identity.operators.errors import ApprovalExecutorUnavailable, InvalidApprovalPayload
from billfold.identity.operators.executors import (
    ApprovalExecutors,
    ApprovedAction,
    ExecutionOutcome,
)
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.payloads import RiskResponseReversalPayload, canonical_payload
from billfold.identity.operators.permissions import ACTION_PERMISSIONS, ActionType, Permission
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, parse_id
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import AccountStatus
from billfold.risk.cases import responses, service, settlement
from billfold.risk.cases.errors import CaseHoldExpired, ResponseNotActive
from billfold.risk.cases.repository import CaseRepository, ResponseRepository
from billfold.risk.cases.resolver import HeldMovementResolver
from billfold.risk.models import RiskResponse
from billfold.risk.types import Response
from billfold.wallets.service import ledger_tenant_of

__all__ = [
    "ENFORCE_ATTEMPTS_MAX",
    "RECOVERY_AFTER_S",
    "RESOLVE_ATTEMPTS_MAX",
    "SWEEP_MAX",
    "Recovered",
    "RiskResponseReversalCheck",
    "RiskResponseReversalExecutor",
    "apply_manual_response",
    "decide_case",
    "enforce_response",
    "enforce_responses",
    "expire_lapsed",
    "recover",
    "request_reversal",
    "settle_case",
]

log = structlog.get_logger(__name__)

RESOLVE_ATTEMPTS_MAX = 20
ENFORCE_ATTEMPTS_MAX = 20
RECOVERY_AFTER_S = 60
"""How old a pending resolution or enforcement must be before the sweep retries it (a
younger one may still be in flight in the request that made it)."""
SWEEP_MAX = 100
_FREEZES_PER_USER_MAX = 100


# -- cases


async def decide_case(
    unit_of_work: UnitOfWork,
    resolver: HeldMovementResolver,
    *,
    principal: OperatorPrincipal,
    case_id: uuid.UUID,
    approve: bool,
    note: str | None,
    clock: Clock,
) -> service.CaseDetail:
    """Approve (post the hold) or reject (void it) an open case; ``case_not_open`` when it
    was decided (or expired) before, ``case_hold_expired`` for an approval past its hold:
    nothing is posted, and the case is expired at once (its hold voided) through the
    review queue's one expiry path (``risk.cases.settlement.expire_case``) rather than
    left open until the sweep. Returns the case as it stands: ``resolving`` when the
    resolver failed (it is retried by :func:`recover`)."""
    approvals.require_permission(principal, Permission.CASES_REVIEW)
    try:
        async with unit_of_work.begin() as session:
            await service.claim_decision(
                session,
                tenant_id=principal.tenant_id,
                case_id=case_id,
                operator_id=principal.operator_id,
                approve=approve,
                note=note,
                now_ns=clock.now_ns(),
            )
    except CaseHoldExpired:
        await expire_lapsed(
            unit_of_work, resolver, principal=principal, case_id=case_id, clock=clock
        )
        raise
    await settle_case(unit_of_work, resolver, case_id=case_id, clock=clock)
    async with unit_of_work.begin() as session:
        return await service.get_case(session, tenant_id=principal.tenant_id, case_id=case_id)


async def expire_lapsed(
    unit_of_work: UnitOfWork,
    resolver: HeldMovementResolver,
    *,
    principal: OperatorPrincipal,
    case_id: uuid.UUID,
    clock: Clock,
) -> bool:
    """Expire (and void) an open case of the caller's tenant whose hold lapsed, now rather
    than when the sweep comes: for an approval refused ``case_hold_expired``. The same
    claim as the sweep's (``risk.cases.settlement.expire_case``): if the sweep is expiring
    it at this moment, one of the two does, once. Whether this call expired it."""
    approvals.require_permission(principal, Permission.CASES_REVIEW)
    return await settlement.expire_case(
        unit_of_work,
        resolver,
        tenant_id=principal.tenant_id,
        case_id=case_id,
        now_ns=clock.now_ns(),
    )


async def settle_case(
    unit_of_work: UnitOfWork, resolver: HeldMovementResolver, *, case_id: uuid.UUID, clock: Clock
) -> bool:
    """Move a decided case's held money and mark its resolution settled; False (recorded
    on the resolution) when the resolver failed (``risk.cases.settlement.settle_case``)."""
    return await settlement.settle_case(
        unit_of_work, resolver, case_id=case_id, now_ns=clock.now_ns()
    )


# -- responses


async def apply_manual_response(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    principal: OperatorPrincipal,
    user_id: uuid.UUID,
    kind: Response,
    reason: str,
    limit_bps: int,
    clock: Clock,
) -> RiskResponse:
    """An operator applies a response to an end user of its tenant (in the user's mode);
    a freeze is enforced at once."""
    approvals.require_permission(principal, Permission.CASES_REVIEW)
    cleaned = service.clean_note(reason)
    async with unit_of_work.begin() as session:
        user = await responses.response_user(
            session, tenant_id=principal.tenant_id, user_id=user_id
        )
        response = await responses.apply_response(
            session,
            tenant_id=principal.tenant_id,
            mode=user.mode,
            user_id=user.id,
            kind=kind,
            decision_id=None,
            actor=responses.Actor(actor_type="operator", actor_id=principal.actor.actor_id),
            reason=cleaned,
            lower_limits_bps=limit_bps,
            at_ns=clock.now_ns(),
        )
        response_id = response.id
    await enforce_responses(unit_of_work, ledger, response_ids=[response_id])
    async with unit_of_work.begin() as session:
        return await responses.get_response(
            session, tenant_id=principal.tenant_id, response_id=response_id
        )


async def enforce_responses(
    unit_of_work: UnitOfWork, ledger: Ledger, *, response_ids: Sequence[uuid.UUID]
) -> int:
    """After the transaction that applied them commits: freeze the accounts of the
    ``freeze_account`` responses among `response_ids` (others need nothing). Idempotent.
    Returns how many were enforced now."""
    invariant(len(response_ids) <= SWEEP_MAX, "enforcements are bounded")
    enforced = 0
    for response_id in response_ids:
        enforced += await enforce_response(unit_of_work, ledger, response_id=response_id)
    return enforced


async def enforce_response(
    unit_of_work: UnitOfWork, ledger: Ledger, *, response_id: uuid.UUID
) -> bool:
    """Freeze one response's accounts, if it has a pending enforcement; True when it was
    enforced by this call."""
    async with unit_of_work.begin() as session:
        repository = ResponseRepository(session)
        enforcement = await repository.enforcement(response_id)
        if enforcement is None or enforcement.state != "pending":
            return False
        response = await session.get(RiskResponse, response_id)
        invariant(response is not None, "an enforcement has its response")
        assert response is not None
        detail = responses.detail_of(response)
    try:
        froze = await _freeze(unit_of_work, ledger, response=response, detail=detail)
    except Exception as error:  # retried by recover(); the row says it is still to do
        log.warning("risk.response.freeze_failed", error=type(error).__name__)
        async with unit_of_work.begin() as session:
            await ResponseRepository(session).enforcement_failed(response_id=response_id)
        return False
    async with unit_of_work.begin() as session:
        repository = ResponseRepository(session)
        finished = await repository.finish_enforcement(
            response_id=response_id, to_state="done", now_ns=_now_ns(ledger)
        )
        after = None if finished else await repository.enforcement(response_id)
    if after is not None and after.state == "cancelled":
        # Reversed while this freeze was under way: its unfreeze may have come first, so
        # what this call froze is unfrozen again (a reversed response holds nothing).
        await _unfreeze_accounts(unit_of_work, ledger, response=response, account_ids=froze)
    return finished


async def _freeze(
    unit_of_work: UnitOfWork, ledger: Ledger, *, response: RiskResponse, detail: dict[str, object]
) -> list[uuid.UUID]:
    """Record which active accounts this response freezes, then freeze them; the
    accounts frozen by this call."""
    listed = _account_ids(detail.get("accounts"))
    frozen = _account_ids(detail.get("frozen"))
    ledger_tenant = ledger_tenant_of(response.tenant_id, response.mode)
    accounts = await ledger.lookup_accounts(tenant_id=ledger_tenant, ids=listed)
    active = [account.id for account in accounts if account.status is AccountStatus.ACTIVE]
    newly = [account_id for account_id in active if account_id not in frozen]
    if newly:  # recorded first: a crash after freezing still knows who froze them
        detail["frozen"] = [format_id(responses.ACCOUNT_ID_PREFIX, a) for a in [*frozen, *newly]]
        async with unit_of_work.begin() as session:
            await ResponseRepository(session).set_detail(
                response_id=response.id, detail=responses.dumps_detail(detail)
            )
    for account_id in active:
        await ledger.set_account_status(
            tenant_id=ledger_tenant, account_id=account_id, status=AccountStatus.FROZEN
        )
    return active


async def _unfreeze_accounts(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    response: RiskResponse,
    account_ids: Sequence[uuid.UUID],
) -> int:
    """Unfreeze `account_ids` (frozen by `response`), except those another freeze in
    force on the user still covers; how many were unfrozen."""
    async with unit_of_work.begin() as session:
        others = await ResponseRepository(session).in_force_of_kind(
            tenant_id=response.tenant_id,
            mode=response.mode,
            user_id=response.user_id,
            kind=Response.FREEZE_ACCOUNT.value,
            limit=_FREEZES_PER_USER_MAX,
        )
    covered = {
        account_id
        for other in others
        if other.id != response.id
        for account_id in _account_ids(responses.detail_of(other).get("accounts"))
    }
    ledger_tenant = ledger_tenant_of(response.tenant_id, response.mode)
    wanted = [account_id for account_id in account_ids if account_id not in covered]
    accounts = await ledger.lookup_accounts(tenant_id=ledger_tenant, ids=wanted)
    unfrozen = 0
    for account in accounts:
        if account.status is AccountStatus.FROZEN:
            await ledger.set_account_status(
                tenant_id=ledger_tenant, account_id=account.id, status=AccountStatus.ACTIVE
            )
            unfrozen += 1
    return unfrozen


def _account_ids(value: object) -> list[uuid.UUID]:
    if not isinstance(value, list):
        return []
    return [parse_id(responses.ACCOUNT_ID_PREFIX, item) for item in value if isinstance(item, str)]


def _now_ns(ledger: Ledger) -> int:
    return ledger.clock.now_ns()


async def request_reversal(
    unit_of_work: UnitOfWork,
    executors: ApprovalExecutors,
    *,
    principal: OperatorPrincipal,
    response_id: uuid.UUID,
    reason: str,
    clock: Clock,
) -> tuple[RiskResponse, ApprovalRequest]:
    """Mark a response ``reversing`` and ask for its four-eyes reversal, in one
    transaction. A response already ``reversing`` may be asked again only when its last
    request was refused, expired or failed; the response is locked meanwhile, so of two
    such requests at once exactly one makes an approval (the other: ``response_not_active``)."""
    action_type = ActionType.RISK_RESPONSE_REVERSAL
    approvals.require_permission(principal, ACTION_PERMISSIONS[action_type].request)
    if not executors.supports(action_type):
        raise ApprovalExecutorUnavailable(f"No executor for {action_type.value} is installed.")
    payload = {"response_id": format_id(responses.RESPONSE_ID_PREFIX, response_id)}
    async with unit_of_work.begin() as session:
        now_ns = clock.now_ns()
        response = await _mark_reversing(
            session, tenant_id=principal.tenant_id, response_id=response_id
        )
        approval = await approvals.create_approval_request(
            session,
            principal=principal,
            action_type=action_type,
            payload=payload,
            reason=reason,
            expires_in_s=None,
            now_ns=now_ns,
        )
    return response, approval


async def _mark_reversing(
    session: AsyncSession, *, tenant_id: uuid.UUID, response_id: uuid.UUID
) -> RiskResponse:
    """The tenant's response, locked and marked ``reversing`` in the caller's transaction
    (the one that stores the reversal's request), once no reversal of it is waiting:
    ``response_not_active`` when one is, or when it is reversed already. Both ways of
    asking (``/reverse`` and ``POST /v1/approvals``) take this path, so a response shows
    ``reversing`` whichever was used, and of two requests at once exactly one passes."""
    response = await _lock_unrequested(session, tenant_id=tenant_id, response_id=response_id)
    await ResponseRepository(session).transition(
        response_id=response.id, from_states=("active",), to_state="reversing"
    )
    await session.refresh(response)
    if response.state != "reversing":
        raise ResponseNotActive(f"The response is {response.state}.", response_state=response.state)
    return response


async def _lock_unrequested(
    session: AsyncSession, *, tenant_id: uuid.UUID, response_id: uuid.UUID
) -> RiskResponse:
    """The tenant's response, locked until the transaction ends, once no reversal of it is
    waiting (pending or approved): ``response_not_active`` otherwise.

    Locked first: two requests after a refusal both found no live request and both asked
    for one (two pending approvals for one reversal). The second now waits for the first
    to commit, then finds its request and is refused. The live request is looked for
    whatever the response's state (a request stored before reversals marked it, or one
    refused, leaves it ``active`` or ``reversing``)."""
    response = await responses.get_response(
        session, tenant_id=tenant_id, response_id=response_id, for_update=True
    )
    payload = {"response_id": format_id(responses.RESPONSE_ID_PREFIX, response.id)}
    canonical = canonical_payload(ActionType.RISK_RESPONSE_REVERSAL, payload)
    if await _live_reversal(session, tenant_id, canonical):
        raise ResponseNotActive(
            "A reversal of this response is already waiting for its approval.",
            response_state=response.state,
        )
    return response


async def _live_reversal(session: AsyncSession, tenant_id: uuid.UUID, payload: str) -> bool:
    """Whether a reversal request for this payload is pending or approved."""
    statement = select(ApprovalRequest.id).where(
        ApprovalRequest.tenant_id == tenant_id,
        ApprovalRequest.action_type == ActionType.RISK_RESPONSE_REVERSAL.value,
        ApprovalRequest.payload == payload,
        ApprovalRequest.status.in_(("pending", "approved")),
    )
    return (await session.execute(statement.limit(1))).first() is not None


class RiskResponseReversalCheck:
    """The reversal's check when it is asked for at ``POST /v1/approvals``, in the
    transaction that stores the request (``ApprovalExecutors.checks``): the response is
    locked and marked ``reversing`` as ``/reverse`` does (:func:`_mark_reversing`), so two
    requests at once make one pending approval, the other refused ``response_not_active``.
    A response that does not exist, or is reversed already, is refused 422
    ``invalid_approval_payload``, like any payload naming nothing that can be done."""

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        invariant(action_type is ActionType.RISK_RESPONSE_REVERSAL, "check for its own type")
        response_id = RiskResponseReversalPayload.model_validate_json(
            payload
        ).internal_response_id()
        found = await ResponseRepository(session).get(tenant_id=tenant_id, response_id=response_id)
        if found is None or found.state == "reversed":
            raise InvalidApprovalPayload("The response must exist and be in force.")
        await _mark_reversing(session, tenant_id=tenant_id, response_id=response_id)


class RiskResponseReversalExecutor:
    """Undoes an automated risk response once a second operator approved its reversal:
    the ledger part (unfreeze) first, then the rest and the ``reversed`` state in one
    transaction. Idempotent on the approval: a reversed response is left alone."""

    def __init__(self, ledger: Ledger, unit_of_work: UnitOfWork) -> None:
        self._ledger = ledger
        self._unit_of_work = unit_of_work

    async def check(self, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str) -> None:
        """Nothing before the request's transaction: checking there could not lock the
        response until the request is stored, so two requests at once both passed.
        :class:`RiskResponseReversalCheck` checks it in that transaction."""
        invariant(action_type is ActionType.RISK_RESPONSE_REVERSAL, "executor for its own type")

    async def execute(self, action: ApprovedAction) -> ExecutionOutcome:
        payload = RiskResponseReversalPayload.model_validate_json(action.payload)
        response_id = payload.internal_response_id()
        async with self._unit_of_work.begin() as session:
            response = await ResponseRepository(session).get(
                tenant_id=action.tenant_id, response_id=response_id
            )
        if response is None:
            return ExecutionOutcome(succeeded=False, facts={"failure": "response_not_found"})
        facts: dict[str, str | int | bool | None] = {
            "response_id": payload.response_id,
            "kind": response.kind,
        }
        if response.state == "reversed":
            return ExecutionOutcome(succeeded=True, facts={**facts, "already_reversed": True})
        if response.kind == Response.FREEZE_ACCOUNT.value:
            facts["accounts_unfrozen"] = await self._unfreeze(response)
        async with self._unit_of_work.begin() as session:
            reloaded = await ResponseRepository(session).get(
                tenant_id=action.tenant_id, response_id=response_id
            )
            assert reloaded is not None
            done = await responses.finish_reversal(
                session,
                response=reloaded,
                approval_id=action.approval_id,
                reversed_by=action.decided_by,
                at_ns=action.decided_at,
            )
        return ExecutionOutcome(succeeded=True, facts={**facts, "already_reversed": not done})

    async def _unfreeze(self, response: RiskResponse) -> int:
        """Unfreeze the accounts this response froze, except those another freeze in
        force on the user still covers."""
        frozen = _account_ids(responses.detail_of(response).get("frozen"))
        return await _unfreeze_accounts(
            self._unit_of_work, self._ledger, response=response, account_ids=frozen
        )


# -- recovery


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one :func:`recover` round finished."""

    settled: int
    expired: int
    enforced: int


async def recover(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    resolver: HeldMovementResolver,
    *,
    clock: Clock,
    older_than_s: int = RECOVERY_AFTER_S,
    limit: int = SWEEP_MAX,
) -> Recovered:
    """One round of the periodic worker loop: retry unsettled case resolutions, expire
    open cases past their hold (voiding it), and enforce freezes a crash left pending.
    Each step is bounded by `limit`."""
    invariant(1 <= limit <= SWEEP_MAX, "a sweep is bounded")
    now_ns = clock.now_ns()
    cutoff_ns = now_ns - older_than_s * NANOSECONDS_PER_SECOND
    async with unit_of_work.begin() as session:
        unsettled = await CaseRepository(session).unsettled(
            requested_before_ns=cutoff_ns, attempts_max=RESOLVE_ATTEMPTS_MAX, limit=limit
        )
    settled = 0
    for case_id in unsettled:
        settled += await settle_case(unit_of_work, resolver, case_id=case_id, clock=clock)
    expired = await _expire_due(unit_of_work, resolver, clock=clock, limit=limit)
    async with unit_of_work.begin() as session:
        unenforced = await ResponseRepository(session).unenforced(
            created_before_ns=cutoff_ns, attempts_max=ENFORCE_ATTEMPTS_MAX, limit=limit
        )
    enforced = await enforce_responses(unit_of_work, ledger, response_ids=unenforced)
    return Recovered(settled=settled, expired=expired, enforced=enforced)


async def _expire_due(
    unit_of_work: UnitOfWork, resolver: HeldMovementResolver, *, clock: Clock, limit: int
) -> int:
    """The review queue's one expiry path (``risk.cases.settlement.expire_due``, which
    payments' recovery loop takes too): each case claimed before its hold is voided."""
    return await settlement.expire_due(unit_of_work, resolver, now_ns=clock.now_ns(), limit=limit)

"""Four-eyes approval requests: asking, reading, deciding, expiring, recording the outcome.

The rules, each enforced where nothing can skip it:

- asking needs the action type's *request* permission; deciding needs its *approve*
  permission, and a different operator than the requester (also a CHECK constraint);
- approving also needs the requester to be active and to hold the request permission
  still: four eyes are two people who may each do their part when the act happens, so a
  request outlives neither its requester's disabling nor the loss of their right to ask;
- one operator has at most ``PENDING_APPROVALS_PER_REQUESTER_MAX`` pending requests, a
  tenant at most ``PENDING_APPROVALS_PER_TENANT_MAX``: one operator (or one who took over
  its session) cannot fill the tenant's cap and so block every other operator's requests;
- a limit increase is for an active end user: one who is disabled (erasure disables too)
  is refused when it is asked for and, like a requester who lost their standing, when it
  would be approved (it may have been disabled in between);
- a request is decided once: every transition is a conditional UPDATE on the previous
  status, so of two concurrent decisions exactly one changes the row;
- a pending request past ``expires_at`` can no longer be decided; it becomes ``expired``;
- refusal and expiry execute nothing; approval executes exactly once (see ``flows``).

Functions flush and never commit. A decision that fails is *returned* (:class:`Decision`
with an ``error``), not raised, because some failures leave a record that must be
committed (a request found expired is marked so).
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.operators.errors import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    ApprovalNotFound,
    HolderNotActive,
    InvalidApprovalExpiry,
    InvalidNote,
    PendingApprovalLimitReached,
    PermissionDenied,
    RequesterNotPermitted,
    RequesterPendingApprovalLimitReached,
    SelfApprovalForbidden,
)
from billfold.identity.operators.executors import ExecutionOutcome
from billfold.identity.operators.models import NOTE_LENGTH_MAX, ApprovalRequest, Operator
from billfold.identity.operators.payloads import LimitIncreasePayload, canonical_payload
from billfold.identity.operators.permissions import (
    ACTION_PERMISSIONS,
    ActionType,
    Permission,
    approvable_actions,
    permissions_of,
    visible_actions,
)
from billfold.identity.operators.repository import ApprovalRepository, OperatorRepository
from billfold.identity.operators.service import cursor_id, roles_of
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, OperatorPrincipal
from billfold.identity.security_events import (
    ActorType,
    SecurityEventType,
    record_security_event,
)
from billfold.identity.users.repository import UserRepository
from billfold.identity.users.types import USER_ID_PREFIX
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import BillfoldError, invariant
from billfold.kit.ids import InvalidId, format_id, new_id, parse_id
from billfold.kit.pagination import Page, clamp_page_size, encode_cursor

__all__ = [
    "APPROVAL_ID_PREFIX",
    "EXPIRY_DEFAULT_S",
    "EXPIRY_MAX_S",
    "EXPIRY_MIN_S",
    "PENDING_APPROVALS_PER_REQUESTER_MAX",
    "PENDING_APPROVALS_PER_TENANT_MAX",
    "Decision",
    "clean_note",
    "create_approval_request",
    "decide",
    "expire_due",
    "finish_execution",
    "get_approval",
    "list_approvals",
    "payload_of",
    "require_permission",
    "still_waiting",
]

APPROVAL_ID_PREFIX = "apr"
EXPIRY_DEFAULT_S = 24 * 3600
EXPIRY_MIN_S = 5 * 60
EXPIRY_MAX_S = 7 * 24 * 3600
"""A request waits at most a week: stale approvals are how four eyes become two."""
PENDING_APPROVALS_PER_TENANT_MAX = 1_000
PENDING_APPROVALS_PER_REQUESTER_MAX = 100
"""One operator's share of the tenant's cap: filling it blocks only that operator."""
EXPIRED_PER_SWEEP_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The request after a decision attempt, and why the attempt failed, if it did."""

    approval: ApprovalRequest | None
    error: BillfoldError | None

    def __post_init__(self) -> None:
        invariant((self.approval is None) != (self.error is None), "one of the two is set")


def clean_note(text: str) -> str:
    """A reason or note as stored: trimmed, 1 to NOTE_LENGTH_MAX characters, and no control
    characters but line breaks and tabs (a NUL, for one, PostgreSQL cannot store)."""
    cleaned = text.strip()
    controls = any(
        unicodedata.category(character) == "Cc" and character not in "\n\t" for character in cleaned
    )
    if not 1 <= len(cleaned) <= NOTE_LENGTH_MAX or controls:
        raise InvalidNote(
            f"A reason or note has 1 to {NOTE_LENGTH_MAX} characters and no control characters."
        )
    return cleaned


def payload_of(approval: ApprovalRequest) -> dict[str, Any]:
    """The stored payload as a JSON object."""
    loaded = json.loads(approval.payload)
    invariant(isinstance(loaded, dict), "a stored payload is a JSON object")
    return dict(loaded)


async def create_approval_request(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    action_type: ActionType,
    payload: Mapping[str, Any],
    reason: str,
    expires_in_s: int | None,
    now_ns: int,
) -> ApprovalRequest:
    """A pending request, if the caller may ask for this action and the payload fits it."""
    require_permission(principal, ACTION_PERMISSIONS[action_type].request)
    canonical = canonical_payload(action_type, payload)
    lifetime_s = EXPIRY_DEFAULT_S if expires_in_s is None else expires_in_s
    if not EXPIRY_MIN_S <= lifetime_s <= EXPIRY_MAX_S:
        raise InvalidApprovalExpiry(
            f"A request expires {EXPIRY_MIN_S} to {EXPIRY_MAX_S} seconds after it is made.",
            expires_in_s_min=EXPIRY_MIN_S,
            expires_in_s_max=EXPIRY_MAX_S,
        )
    await _require_holder_standing(
        session, tenant_id=principal.tenant_id, action_type=action_type, payload=canonical
    )
    approvals = ApprovalRepository(session)
    await _require_pending_room(approvals, principal=principal, now_ns=now_ns)
    approval = ApprovalRequest(
        id=new_id(),
        tenant_id=principal.tenant_id,
        action_type=action_type.value,
        payload=canonical,
        reason=clean_note(reason),
        requested_by=principal.operator_id,
        status="pending",
        created_at=now_ns,
        expires_at=now_ns + lifetime_s * NANOSECONDS_PER_SECOND,
        decided_by=None,
        decided_at=None,
        decision_note=None,
        executed_at=None,
        result=None,
    )
    await approvals.add(approval)
    await _record(session, principal, approval, SecurityEventType.APPROVAL_REQUESTED, now_ns)
    return approval


async def _require_pending_room(
    approvals: ApprovalRepository, *, principal: OperatorPrincipal, now_ns: int
) -> None:
    """Refuse a request beyond the caller's cap or the tenant's. Counted under the tenant's
    lock, held until the request commits, so concurrent requests cannot each take the
    last place. The caller's cap first: it is the one the caller can do something about."""
    await approvals.lock_pending(principal.tenant_id)
    mine = await approvals.count_pending(
        tenant_id=principal.tenant_id, now_ns=now_ns, requested_by=principal.operator_id
    )
    if mine >= PENDING_APPROVALS_PER_REQUESTER_MAX:
        raise RequesterPendingApprovalLimitReached(
            f"An operator has at most {PENDING_APPROVALS_PER_REQUESTER_MAX} pending requests;"
            " wait for some of yours to be decided or to expire.",
            limit=PENDING_APPROVALS_PER_REQUESTER_MAX,
        )
    if await approvals.count_pending(tenant_id=principal.tenant_id, now_ns=now_ns) >= (
        PENDING_APPROVALS_PER_TENANT_MAX
    ):
        raise PendingApprovalLimitReached(
            f"A tenant has at most {PENDING_APPROVALS_PER_TENANT_MAX} pending requests.",
            limit=PENDING_APPROVALS_PER_TENANT_MAX,
        )


async def _require_holder_standing(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    action_type: ActionType,
    payload: str,
    lock: bool = False,
) -> None:
    """Raise :class:`HolderNotActive` if ``payload`` raises the limit of an end user of the
    tenant who is not active: a disabled (or erased) user's limits are no one's to raise.
    Any other subject (not an end user, not of the tenant, none) is the executor's to
    refuse. With ``lock``, the user's row is locked until this transaction ends, so a
    concurrent disabling or erasure either waits for it or is read here."""
    if action_type is not ActionType.LIMIT_INCREASE:
        return
    subject_id = LimitIncreasePayload.model_validate_json(payload).subject_id
    try:
        user_id = parse_id(USER_ID_PREFIX, subject_id)
    except InvalidId:
        return
    user = await UserRepository(session).get_in_tenant(
        tenant_id=tenant_id, user_id=user_id, for_update=lock
    )
    if user is not None and user.status != "active":
        raise HolderNotActive(
            "The end user is disabled (or erased): their limits cannot be raised.",
            subject_id=subject_id,
            holder_status=user.status,
        )


def require_permission(principal: OperatorPrincipal, permission: Permission) -> None:
    """Raise :class:`PermissionDenied` unless the operator holds ``permission``."""
    if permission not in principal.permissions:
        raise PermissionDenied(
            f"This needs the permission {permission.value}.", required_permission=permission.value
        )


async def _record(
    session: AsyncSession,
    principal: OperatorPrincipal,
    approval: ApprovalRequest,
    event_type: SecurityEventType,
    now_ns: int,
) -> None:
    await record_security_event(
        session,
        tenant_id=approval.tenant_id,
        event_type=event_type,
        actor_type=principal.actor.actor_type,
        actor_id=principal.actor.actor_id,
        occurred_at=now_ns,
        subject_id=format_id(APPROVAL_ID_PREFIX, approval.id),
        detail={"action_type": approval.action_type},
    )


async def get_approval(
    session: AsyncSession, *, principal: OperatorPrincipal, approval_id: uuid.UUID
) -> ApprovalRequest:
    """A request the caller may see: of its tenant, and of an action type it may ask for or
    decide. Any other is as absent as a missing one."""
    approval = await ApprovalRepository(session).get_for_tenant(
        tenant_id=principal.tenant_id, approval_id=approval_id
    )
    visible = {action.value for action in visible_actions(principal.permissions)}
    if approval is None or approval.action_type not in visible:
        raise ApprovalNotFound()
    return approval


async def still_waiting(
    session: AsyncSession, *, tenant_id: uuid.UUID, approval_id: uuid.UUID | None
) -> ApprovalRequest | None:
    """The tenant's request `approval_id` if it still waits (pending, or approved and not
    yet executed): what a domain checks before asking again for the same change."""
    if approval_id is None:
        return None
    approval = await ApprovalRepository(session).get_for_tenant(
        tenant_id=tenant_id, approval_id=approval_id
    )
    if approval is None or approval.status not in ("pending", "approved"):
        return None
    return approval


async def list_approvals(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    status: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[ApprovalRequest]:
    """The requests the caller may see, newest first, one bounded page at a time."""
    page_size = clamp_page_size(limit)
    visible = sorted(action.value for action in visible_actions(principal.permissions))
    if not visible:
        return Page(items=[], next_cursor=None)
    rows = await ApprovalRepository(session).list_for_tenant(
        tenant_id=principal.tenant_id,
        action_types=visible,
        status=status,
        after_id=None if cursor is None else cursor_id(cursor),
        limit=page_size + 1,
    )
    items = rows[:page_size]
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


async def decide(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    approval_id: uuid.UUID,
    approve: bool,
    note: str | None,
    now_ns: int,
) -> Decision:
    """Approve or refuse a pending request, if every rule allows it (see the module doc).

    The conditional UPDATE comes first: it is the check and the decision in one statement.
    Only when it changes nothing is the row read, to say why. An approval whose requester
    may no longer ask for the action raises :class:`RequesterNotPermitted`, and one of a
    limit increase whose end user is no longer active :class:`HolderNotActive`, undoing it
    (the request stays pending, to be refused or to expire).
    """
    note = None if note is None else clean_note(note)
    approvable = approvable_actions(principal.permissions)
    approvals = ApprovalRepository(session)
    claimed = bool(approvable) and await approvals.claim_decision(
        tenant_id=principal.tenant_id,
        approval_id=approval_id,
        decider_id=principal.operator_id,
        action_types=sorted(action.value for action in approvable),
        to_status="approved" if approve else "refused",
        note=note,
        now_ns=now_ns,
    )
    if not claimed:
        return await _why_not(session, principal=principal, approval_id=approval_id, now_ns=now_ns)
    approval = await approvals.reload(approval_id)
    invariant(approval is not None, "a request just decided exists")
    assert approval is not None  # for mypy; the invariant holds under -O
    invariant(approval.decided_by != approval.requested_by, "four eyes: decider is not requester")
    requester, decider = await _locked_parties(session, approval)
    _require_decider_standing(approval, decider)
    if approve:
        _require_requester_standing(approval, requester)
        await _require_holder_standing(
            session,
            tenant_id=approval.tenant_id,
            action_type=ActionType(approval.action_type),
            payload=approval.payload,
            lock=True,
        )
    granted = SecurityEventType.APPROVAL_GRANTED if approve else SecurityEventType.APPROVAL_REFUSED
    await _record(session, principal, approval, granted, now_ns)
    return Decision(approval=approval, error=None)


async def _locked_parties(
    session: AsyncSession, approval: ApprovalRequest
) -> tuple[Operator | None, Operator | None]:
    """The requester and the decider as committed now, their rows locked until the decision
    commits, so a concurrent disabling or role change of either is not missed (the
    decider's permissions came with its session, read before the claim). Locked in id
    order: two operators deciding each other's requests at once would otherwise deadlock."""
    decider_id = approval.decided_by
    invariant(decider_id is not None, "a decided request names its decider")
    assert decider_id is not None  # for mypy; the invariant holds under -O
    operators = OperatorRepository(session)
    rows = {
        operator_id: await operators.get_for_update(
            tenant_id=approval.tenant_id, operator_id=operator_id
        )
        for operator_id in sorted({approval.requested_by, decider_id})
    }
    return rows[approval.requested_by], rows[decider_id]


def _require_decider_standing(approval: ApprovalRequest, decider: Operator | None) -> None:
    """Raise :class:`PermissionDenied` unless the decider is still active and may still
    decide the action: a demotion or disabling that committed after this request was
    authenticated rolls the claim back, leaving the request pending."""
    needed = ACTION_PERMISSIONS[ActionType(approval.action_type)].approve
    if (
        decider is None
        or decider.status != "active"
        or needed not in permissions_of(roles_of(decider))
    ):
        raise PermissionDenied(
            f"Deciding this request needs the permission {needed.value}, which this operator"
            " no longer holds.",
            required_permission=needed.value,
        )


def _require_requester_standing(approval: ApprovalRequest, requester: Operator | None) -> None:
    """Raise :class:`RequesterNotPermitted` unless the requester is still active and may
    still ask for the action. Raised, not returned: the claim just made must roll back, so
    the request stays pending (to be refused, or to expire). Checked after the claim, so a
    caller who could not decide the request learns nothing about its requester."""
    needed = ACTION_PERMISSIONS[ActionType(approval.action_type)].request
    if (
        requester is None
        or requester.status != "active"
        or needed not in permissions_of(roles_of(requester))
    ):
        raise RequesterNotPermitted(
            "The requester has been disabled or may no longer ask for this action; refuse"
            " the request, and have a permitted operator ask again if it is still wanted.",
            requested_by=format_id(OPERATOR_ID_PREFIX, approval.requested_by),
        )


async def _why_not(
    session: AsyncSession, *, principal: OperatorPrincipal, approval_id: uuid.UUID, now_ns: int
) -> Decision:
    """The error for a decision that changed nothing. Checked in this order so that a
    caller without the right learns nothing new and changes nothing."""
    try:
        approval = await get_approval(session, principal=principal, approval_id=approval_id)
    except ApprovalNotFound as not_found:
        return Decision(approval=None, error=not_found)
    if approval.status == "expired":
        return Decision(approval=None, error=ApprovalExpired())
    if approval.status != "pending":
        return Decision(
            approval=None,
            error=ApprovalAlreadyDecided(
                f"The request is {approval.status}.", approval_status=approval.status
            ),
        )
    if approval.requested_by == principal.operator_id:
        return Decision(approval=None, error=SelfApprovalForbidden())
    needed = ACTION_PERMISSIONS[ActionType(approval.action_type)].approve
    if needed not in principal.permissions:
        denied = PermissionDenied(
            f"Deciding this request needs the permission {needed.value}.",
            required_permission=needed.value,
        )
        return Decision(approval=None, error=denied)
    invariant(approval.expires_at <= now_ns, "a pending, decidable request refused is expired")
    await ApprovalRepository(session).expire(approval_ids=[approval.id], now_ns=now_ns)
    return Decision(approval=None, error=ApprovalExpired())


async def finish_execution(
    session: AsyncSession, *, approval_id: uuid.UUID, outcome: ExecutionOutcome, now_ns: int
) -> ApprovalRequest:
    """Record an approved request's outcome (once; a second recording changes nothing)."""
    approvals = ApprovalRepository(session)
    to_status = "executed" if outcome.succeeded else "failed"
    finished = await approvals.finish(
        approval_id=approval_id, to_status=to_status, result=outcome.to_json(), now_ns=now_ns
    )
    approval = await approvals.reload(approval_id)
    invariant(approval is not None, "a finished request exists")
    assert approval is not None
    if finished:
        await _audit_execution(session, approval, outcome=outcome, now_ns=now_ns)
    return approval


async def _audit_execution(
    session: AsyncSession, approval: ApprovalRequest, *, outcome: ExecutionOutcome, now_ns: int
) -> None:
    """The approved act itself, in the audit log: what was asked (the payload: accounts,
    amount, asset...), by whom, who approved it, and the state before and after."""
    decided_by = approval.decided_by
    await audit.append(
        session,
        tenant_id=approval.tenant_id,
        action=f"approval.{approval.status}",
        occurred_at=now_ns,
        actor_type=ActorType.OPERATOR.value,
        actor_id=None if decided_by is None else format_id(OPERATOR_ID_PREFIX, decided_by),
        target=format_id(APPROVAL_ID_PREFIX, approval.id),
        before={"approval_status": "approved"},
        after={"approval_status": approval.status, **outcome.facts},
        detail={
            "action_type": approval.action_type,
            "payload": payload_of(approval),
            "requested_by": format_id(OPERATOR_ID_PREFIX, approval.requested_by),
        },
    )


async def expire_due(session: AsyncSession, *, now_ns: int, limit: int) -> int:
    """Mark up to ``limit`` pending requests past their time as expired: for a periodic
    sweep (deciding one also finds it expired, so the sweep only tidies up)."""
    invariant(1 <= limit <= EXPIRED_PER_SWEEP_MAX, "a sweep is bounded")
    approvals = ApprovalRepository(session)
    due = await approvals.due_for_expiry(now_ns=now_ns, limit=limit)
    if not due:
        return 0
    return await approvals.expire(approval_ids=due, now_ns=now_ns)

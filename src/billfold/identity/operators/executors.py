"""What runs when a request is approved: one executor per action type, in a small registry.

Two kinds, because atomicity depends on where the effect lives:

- a **transactional** executor writes through the decision's own session, so the approval
  and its effect commit together or not at all;
- an **external** executor acts on another store after the decision commits (the ledger has
  its own connections and batching writer, so it cannot join identity's transaction). It
  must be idempotent on the approval id: a retry after a crash repeats nothing. The ledger
  ones live in ``billfold.flows.approvals`` (identity does not import the ledger) and the
  application passes them in.

Either kind may refuse a request when it is *made*, so that one which could not execute as
it stands never waits for a second operator only to end ``failed``. An external executor
has its ``check``, which runs before the request's transaction. Either kind may register a
:class:`TransactionalCheck` (``ApprovalExecutors.checks``), which runs in the request's own
unit of work before the request is stored, so a refused request leaves no row and no
security event. One that must still hold when the request commits (at most one live
request for a thing) locks what it reads there, and may mark it as asked for (a risk
response turns ``reversing``): a refusal rolls that back with the request. Checks are
advisory: the executor checks again when the request is approved (what was true then may
not be now).

The owning domains' executors live in ``billfold.flows.approvals`` (identity imports
neither the ledger nor wallets) and the application installs them: limit increases raise
a wallets limit override, key rotations make a new key version active, ledger adjustments
and unfreezes act on the ledger. Without them (:func:`default_executors`, identity alone)
limit increases and key rotations are only recorded in ``identity_approved_changes`` with
``applied_at`` NULL, and nothing else happens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators.models import ApprovalRequest, ApprovedChange
from billfold.identity.operators.permissions import ActionType
from billfold.identity.operators.repository import ApprovedChangeRepository
from billfold.kit.errors import invariant

__all__ = [
    "ApprovalExecutors",
    "ApprovedAction",
    "ExecutionOutcome",
    "ExternalExecutor",
    "OutcomeValue",
    "RecordChangeExecutor",
    "TransactionalCheck",
    "TransactionalExecutor",
    "default_executors",
]

OutcomeValue: TypeAlias = str | int | bool | None


@dataclass(frozen=True, slots=True)
class ApprovedAction:
    """An approved request, as an executor sees it: decided, and by whom."""

    approval_id: uuid.UUID
    tenant_id: uuid.UUID
    action_type: ActionType
    payload: str
    """Canonical JSON, validated for ``action_type`` when the request was made."""
    requested_by: uuid.UUID
    decided_by: uuid.UUID
    decided_at: int
    """When it was approved, ns since the epoch."""

    @classmethod
    def from_row(cls, approval: ApprovalRequest) -> ApprovedAction:
        decided_by, decided_at = approval.decided_by, approval.decided_at
        invariant(decided_by is not None, "an approved request has a decider")
        invariant(decided_at is not None, "an approved request has a decision time")
        assert decided_by is not None  # for mypy; the invariants hold under -O
        assert decided_at is not None
        return cls(
            approval_id=approval.id,
            tenant_id=approval.tenant_id,
            action_type=ActionType(approval.action_type),
            payload=approval.payload,
            requested_by=approval.requested_by,
            decided_by=decided_by,
            decided_at=decided_at,
        )


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """Whether the action took effect, and small facts about it (a transfer id, a failure
    code) kept on the request as JSON."""

    succeeded: bool
    facts: Mapping[str, OutcomeValue] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dict(self.facts), sort_keys=True, separators=(",", ":"))


class TransactionalExecutor(Protocol):
    """Runs inside the decision's unit of work: flush only, never commit."""

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        """Apply the action; an exception rolls the decision back with it."""
        ...


class TransactionalCheck(Protocol):
    """An executor's optional check when a request is made, in the request's transaction."""

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        """Refuse (raise a 4xx :class:`~billfold.kit.errors.BillfoldError`) a request that
        could not execute as it stands, before anyone is asked to approve it. ``payload`` is
        the canonical JSON; ``session`` is the request's unit of work, before the request is
        stored: read, and write nothing but what the request itself claims (a row it locks
        so that two requests at once cannot both pass, a state that says it was asked for);
        a refusal, here or later in the request, rolls it back. Advisory: execution checks
        again."""
        ...


class ExternalExecutor(Protocol):
    """Runs after the decision commits; idempotent on ``action.approval_id``."""

    async def check(self, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str) -> None:
        """Refuse (InvalidApprovalPayload) a request that could not execute as it stands,
        before anyone is asked to approve it. Advisory: execution checks again."""
        ...

    async def execute(self, action: ApprovedAction) -> ExecutionOutcome:
        """Apply the action, or report that it did not apply; calling it again for the same
        approval must not apply it twice."""
        ...


@dataclass(frozen=True, slots=True)
class ApprovalExecutors:
    """The registry: which executor runs each action type. An action type with none cannot
    be requested (the server would never be able to carry it out). ``checks`` holds the
    request-time checks that run in the request's transaction, of executors of either kind
    that have one (external executors also have their own ``check``, run before it)."""

    transactional: Mapping[ActionType, TransactionalExecutor]
    external: Mapping[ActionType, ExternalExecutor]
    checks: Mapping[ActionType, TransactionalCheck] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        both = set(self.transactional) & set(self.external)
        invariant(not both, f"an action type has one executor, not two: {sorted(both)}")
        unchecked = set(self.checks) - set(self.transactional) - set(self.external)
        invariant(not unchecked, f"a check belongs to an executor: {sorted(unchecked)}")

    def supports(self, action_type: ActionType) -> bool:
        return action_type in self.transactional or action_type in self.external

    def with_external(self, external: Mapping[ActionType, ExternalExecutor]) -> ApprovalExecutors:
        """This registry with ``external`` executors added (replacing transactional ones for
        the same action types, and their checks: an external executor brings its own)."""
        transactional = {k: v for k, v in self.transactional.items() if k not in external}
        checks = {k: v for k, v in self.checks.items() if k not in external}
        return ApprovalExecutors(
            transactional=MappingProxyType(transactional),
            external=MappingProxyType({**self.external, **external}),
            checks=MappingProxyType(checks),
        )


class RecordChangeExecutor:
    """Records the approved change for its owning domain to apply; nothing else happens."""

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        change = ApprovedChange(
            approval_id=action.approval_id,
            tenant_id=action.tenant_id,
            action_type=action.action_type.value,
            payload=action.payload,
            recorded_at=action.decided_at,
            applied_at=None,
        )
        await ApprovedChangeRepository(session).add(change)
        return ExecutionOutcome(succeeded=True, facts={"recorded": True, "applied": False})


def default_executors() -> ApprovalExecutors:
    """What identity can execute on its own: record limit increases and key rotations."""
    recorder = RecordChangeExecutor()
    return ApprovalExecutors(
        transactional=MappingProxyType(
            {ActionType.LIMIT_INCREASE: recorder, ActionType.KEY_ROTATION: recorder}
        ),
        external=MappingProxyType({}),
    )

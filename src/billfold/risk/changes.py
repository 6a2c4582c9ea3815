"""Change management of risk rules: who may write them, when a version takes effect, and
the audit trail. Every function flushes and never commits (the route's unit of work does).

A rule has versions; at most one is ``active`` (what the engine evaluates). A version is:

- ``shadow``: evaluated and stored with every decision, never enforced. It takes effect
  at once (it changes no outcome);
- ``enforcing``: its action applies. A new or changed enforcing version needs four eyes:
  it is stored ``pending_approval`` with an approval request of type ``risk_rule_change``
  (``billfold.identity.operators``), and becomes ``active`` only when a *different*
  operator holding ``risk.rules.approve`` approves it: :class:`RuleChangeExecutor` makes
  it active in the approval's own transaction, idempotently on the approval id.

Four eyes guard loosening as well as tightening: while a rule's active version is
enforcing, a new version of it (even a shadow one, which would stop the enforcement) waits
for approval like an enforcing one, and so does disabling the rule (``disable`` in the
request's payload; the rule keeps enforcing until the approval executes, and the approval
fails if another version became active meanwhile). A rule whose active version is shadow
(or that has none) is disabled at once.

States: ``pending_approval`` → ``active`` → ``superseded`` (a newer version became
active) or ``disabled`` (the rule was disabled); a pending version that never became
active is ``rejected`` when a newer version replaces it or the rule is disabled (a
refused or expired approval leaves it ``pending_approval``; its approval says why).
Every change that alters what the engine evaluates bumps the tenant's ruleset version,
and every change appends an audit entry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.operators import approvals
from billfold.identity.operators.executors import ApprovedAction, ExecutionOutcome
from billfold.identity.operators.models import NOTE_LENGTH_MAX
from billfold.identity.operators.payloads import RiskRuleChangePayload
from billfold.identity.operators.permissions import ActionType
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, OperatorPrincipal
from billfold.identity.security_events import ActorType
from billfold.kit.errors import invariant
from billfold.kit.ids import InvalidId, format_id, new_id, parse_id
from billfold.kit.pagination import Page, clamp_page_size, decode_id_cursor, encode_cursor
from billfold.risk.errors import (
    InvalidRuleChange,
    RuleChangePending,
    RuleDisabled,
    RuleNameTaken,
    RuleNotFound,
)
from billfold.risk.models import RiskRule, RiskRuleVersion
from billfold.risk.repository import RuleRepository, RulesetRepository
from billfold.risk.rules import FALLBACK_FEATURE_NAMES, validate_expression
from billfold.risk.types import Action, Response

__all__ = [
    "RULE_ID_PREFIX",
    "VERSIONS_LISTED_MAX",
    "RuleChange",
    "RuleChangeExecutor",
    "RuleDraft",
    "add_version",
    "create_rule",
    "disable_rule",
    "get_rule",
    "list_rules",
]

RULE_ID_PREFIX = "rrl"
VERSIONS_LISTED_MAX = 100
"""A rule's versions shown with it, newest first."""
RESPONSES_MAX = len(Response)


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """What an operator writes: a version's content (validated by the schema's bounds)."""

    expression: str
    action: Action
    score: int
    reason: str
    enforcement: str
    """shadow or enforcing."""
    responses: tuple[Response, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A rule after a change, with the version written (None for a disable)."""

    rule: RiskRule
    version: RiskRuleVersion | None
    ruleset_version: int | None
    """The tenant's ruleset version after the change, when it changed."""
    disable_approval_id: uuid.UUID | None = None
    """The approval request a disable waits for (four eyes), when it waits."""


async def create_rule(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    mode: str,
    name: str,
    draft: RuleDraft,
    feature_names: frozenset[str] = FALLBACK_FEATURE_NAMES,
    now_ns: int,
) -> RuleChange:
    """A new rule with its version 1 (active at once when shadow, else pending approval)."""
    validate_expression(draft.expression, feature_names=feature_names)
    rules = RuleRepository(session)
    if await rules.name_taken(tenant_id=principal.tenant_id, mode=mode, name=name):
        raise RuleNameTaken(f"A {mode} rule named {name!r} exists.")
    rule = RiskRule(
        id=new_id(),
        tenant_id=principal.tenant_id,
        mode=mode,
        name=name,
        current_version=None,
        latest_version=0,
        created_by=principal.operator_id,
        created_at=now_ns,
        updated_at=now_ns,
    )
    session.add(rule)
    try:
        await session.flush()  # the unique name index settles a concurrent twin
    except IntegrityError:
        raise RuleNameTaken(f"A {mode} rule named {name!r} exists.") from None
    return await _write_version(session, principal=principal, rule=rule, draft=draft, now_ns=now_ns)


async def add_version(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    rule_id: uuid.UUID,
    draft: RuleDraft,
    feature_names: frozenset[str] = FALLBACK_FEATURE_NAMES,
    now_ns: int,
) -> RuleChange:
    """A new version of the rule; a version still pending is replaced (``rejected``)."""
    validate_expression(draft.expression, feature_names=feature_names)
    rule = await RuleRepository(session).get(
        tenant_id=principal.tenant_id, rule_id=rule_id, for_update=True
    )
    if rule is None:
        raise RuleNotFound()
    return await _write_version(session, principal=principal, rule=rule, draft=draft, now_ns=now_ns)


async def _write_version(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    rule: RiskRule,
    draft: RuleDraft,
    now_ns: int,
) -> RuleChange:
    invariant(draft.enforcement in ("shadow", "enforcing"), "enforcement is shadow or enforcing")
    rules = RuleRepository(session)
    for pending in await rules.in_state(rule_id=rule.id, states=["pending_approval"]):
        pending.state = "rejected"
    number = rule.latest_version + 1
    version = RiskRuleVersion(
        id=new_id(),
        rule_id=rule.id,
        tenant_id=rule.tenant_id,
        mode=rule.mode,
        version=number,
        expression=draft.expression,
        action=draft.action.value,
        score=draft.score,
        reason=draft.reason,
        responses=json.dumps([response.value for response in draft.responses]),
        enforcement=draft.enforcement,
        state="pending_approval",
        created_by=principal.operator_id,
        created_at=now_ns,
        approval_id=None,
        activated_at=None,
        activated_by=None,
        active_from_ruleset=None,
        active_until_ruleset=None,
    )
    session.add(version)
    rule.latest_version = number
    rule.updated_at = now_ns
    await session.flush()
    ruleset_version = None
    enforced = await _active_enforcing(session, rule)
    if draft.enforcement == "shadow" and enforced is None:
        ruleset_version = await _activate(
            session, rule=rule, version=version, by=principal.operator_id, now_ns=now_ns
        )
    else:  # it enforces, or it would stop an enforcing version: four eyes
        await _request_approval(
            session,
            principal=principal,
            rule=rule,
            version=version,
            replaces=enforced,
            now_ns=now_ns,
        )
    await _audit(
        session,
        rule=rule,
        action="risk.rule.version_created" if number > 1 else "risk.rule.created",
        actor=principal.operator_id,
        now_ns=now_ns,
        after={**_described(version), "ruleset_version": ruleset_version},
    )
    return RuleChange(rule=rule, version=version, ruleset_version=ruleset_version)


async def _active_enforcing(session: AsyncSession, rule: RiskRule) -> RiskRuleVersion | None:
    """The rule's active version when it enforces."""
    for version in await RuleRepository(session).in_state(rule_id=rule.id, states=["active"]):
        if version.enforcement == "enforcing":
            return version
    return None


async def _request_approval(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    rule: RiskRule,
    version: RiskRuleVersion,
    replaces: RiskRuleVersion | None,
    now_ns: int,
) -> None:
    kind = "Enforcing" if version.enforcement == "enforcing" else "Shadow"
    summary = f"{kind} risk rule {rule.name!r} ({rule.mode}) v{version.version}"
    if replaces is not None:
        summary += f", replacing enforcing v{replaces.version}"
    approval_id = await _ask(
        session,
        principal=principal,
        payload={"rule_id": format_id(RULE_ID_PREFIX, rule.id), "version": version.version},
        reason=f"{summary}: {version.reason}",
        now_ns=now_ns,
    )
    version.approval_id = approval_id
    await session.flush()


async def _ask(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    payload: dict[str, object],
    reason: str,
    now_ns: int,
) -> uuid.UUID:
    """A four-eyes request of type ``risk_rule_change``, checked by its executor first."""
    await RuleChangeExecutor().check(
        session,
        tenant_id=principal.tenant_id,
        action_type=ActionType.RISK_RULE_CHANGE,
        payload=json.dumps(payload, sort_keys=True, separators=(",", ":")),
    )
    approval = await approvals.create_approval_request(
        session,
        principal=principal,
        action_type=ActionType.RISK_RULE_CHANGE,
        payload=payload,
        reason=reason[:NOTE_LENGTH_MAX],
        expires_in_s=None,
        now_ns=now_ns,
    )
    return approval.id


async def _activate(
    session: AsyncSession,
    *,
    rule: RiskRule,
    version: RiskRuleVersion,
    by: uuid.UUID,
    now_ns: int,
) -> int:
    """Make ``version`` the rule's active one; the new ruleset version."""
    ruleset_version = await RulesetRepository(session).bump(
        tenant_id=rule.tenant_id, mode=rule.mode, now_ns=now_ns
    )
    for previous in await RuleRepository(session).in_state(rule_id=rule.id, states=["active"]):
        previous.state = "superseded"
        previous.active_until_ruleset = ruleset_version
    version.state = "active"
    version.activated_at = now_ns
    version.activated_by = by
    version.active_from_ruleset = ruleset_version
    rule.current_version = version.version
    rule.updated_at = now_ns
    await session.flush()
    return ruleset_version


async def disable_rule(
    session: AsyncSession, *, principal: OperatorPrincipal, rule_id: uuid.UUID, now_ns: int
) -> RuleChange:
    """Stop evaluating the rule (its active version ``disabled``, a pending one
    ``rejected``); a new version enables it again. At once, unless its active version
    enforces: then a second operator's approval is asked for (``disable_approval_id``)."""
    rules = RuleRepository(session)
    rule = await rules.get(tenant_id=principal.tenant_id, rule_id=rule_id, for_update=True)
    if rule is None:
        raise RuleNotFound()
    live = await rules.in_state(rule_id=rule.id, states=["active", "pending_approval"])
    if not live:
        raise RuleDisabled("The rule has no active or pending version.")
    enforced = next((v for v in live if v.state == "active" and v.enforcement == "enforcing"), None)
    if enforced is not None:
        return await _request_disable(
            session, principal=principal, rule=rule, version=enforced, now_ns=now_ns
        )
    ruleset_version = await _disable(
        session, rule=rule, live=live, actor=principal.operator_id, now_ns=now_ns
    )
    return RuleChange(rule=rule, version=None, ruleset_version=ruleset_version)


async def _request_disable(
    session: AsyncSession,
    *,
    principal: OperatorPrincipal,
    rule: RiskRule,
    version: RiskRuleVersion,
    now_ns: int,
) -> RuleChange:
    asked = await approvals.still_waiting(
        session, tenant_id=rule.tenant_id, approval_id=rule.disable_approval_id
    )
    if asked is not None:
        raise RuleChangePending(
            "Disabling this rule already waits for approval"
            f" {format_id(approvals.APPROVAL_ID_PREFIX, asked.id)}."
        )
    approval_id = await _ask(
        session,
        principal=principal,
        payload={
            "rule_id": format_id(RULE_ID_PREFIX, rule.id),
            "version": version.version,
            "operation": "disable",
        },
        reason=f"Disable enforcing risk rule {rule.name!r} ({rule.mode}) v{version.version}",
        now_ns=now_ns,
    )
    rule.disable_approval_id = approval_id
    rule.updated_at = now_ns
    await session.flush()
    await _audit(
        session,
        rule=rule,
        action="risk.rule.disable_requested",
        actor=principal.operator_id,
        now_ns=now_ns,
        after={"version": version.version, "state": version.state},
        detail={"approval_id": format_id(approvals.APPROVAL_ID_PREFIX, approval_id)},
    )
    return RuleChange(
        rule=rule, version=None, ruleset_version=None, disable_approval_id=approval_id
    )


async def _disable(
    session: AsyncSession,
    *,
    rule: RiskRule,
    live: Sequence[RiskRuleVersion],
    actor: uuid.UUID,
    now_ns: int,
    detail: dict[str, object] | None = None,
) -> int | None:
    """Disable the rule's `live` versions now; the new ruleset version, when it changed."""
    ruleset_version = None
    if any(version.state == "active" for version in live):
        ruleset_version = await RulesetRepository(session).bump(
            tenant_id=rule.tenant_id, mode=rule.mode, now_ns=now_ns
        )
    for version in live:
        if version.state == "active":
            version.state = "disabled"
            version.active_until_ruleset = ruleset_version
        else:
            version.state = "rejected"
    rule.current_version = None
    rule.updated_at = now_ns
    await session.flush()
    await _audit(
        session,
        rule=rule,
        action="risk.rule.disabled",
        actor=actor,
        now_ns=now_ns,
        after={"state": "disabled", "ruleset_version": ruleset_version},
        detail=detail,
    )
    return ruleset_version


async def get_rule(
    session: AsyncSession, *, tenant_id: uuid.UUID, rule_id: uuid.UUID
) -> tuple[RiskRule, Sequence[RiskRuleVersion]]:
    """The tenant's rule and its newest versions (another tenant's is not found)."""
    rules = RuleRepository(session)
    rule = await rules.get(tenant_id=tenant_id, rule_id=rule_id)
    if rule is None:
        raise RuleNotFound()
    return rule, await rules.versions(rule_id=rule.id, limit=VERSIONS_LISTED_MAX)


async def list_rules(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[RiskRule]:
    page_size = clamp_page_size(limit)
    rows = await RuleRepository(session).list_for_tenant(
        tenant_id=tenant_id,
        mode=mode,
        after_id=None if cursor is None else decode_id_cursor(cursor),
        limit=page_size + 1,
    )
    items = list(rows[:page_size])
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


class RuleChangeExecutor:
    """Four eyes on enforcing rules: the transactional executor of ``risk_rule_change``
    (installed by ``billfold.flows.approvals.approval_executors``)."""

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        """Refuse a request for a version that is not pending or already has its request
        (so no version is asked for twice), or a disable of a version that is not the
        rule's active enforcing one."""
        invariant(action_type is ActionType.RISK_RULE_CHANGE, "executor for its own type")
        version = await self._version(session, tenant_id=tenant_id, payload=payload)
        if version is None:
            raise InvalidRuleChange("No such rule version.")
        if RiskRuleChangePayload.model_validate_json(payload).operation == "disable":
            if version.state != "active" or version.enforcement != "enforcing":
                raise InvalidRuleChange("Only an active enforcing version waits for a disable.")
            return
        if version.state != "pending_approval" or version.approval_id is not None:
            raise InvalidRuleChange(
                "Only a new enforcing version waits for approval; it is requested by"
                " POST /v1/risk/rules or POST /v1/risk/rules/{rule_id}/versions."
            )

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        version = await self._version(session, tenant_id=action.tenant_id, payload=action.payload)
        if version is None:
            return ExecutionOutcome(succeeded=False, facts={"failure": "rule_version_not_found"})
        facts: dict[str, str | int | bool | None] = {
            "rule_id": format_id(RULE_ID_PREFIX, version.rule_id),
            "version": version.version,
        }
        if RiskRuleChangePayload.model_validate_json(action.payload).operation == "disable":
            return await self._disable(session, action, version, facts)
        if version.approval_id != action.approval_id:
            return ExecutionOutcome(succeeded=False, facts={**facts, "failure": "not_requested"})
        if version.state == "active":  # executed before: nothing more to do
            return ExecutionOutcome(succeeded=True, facts={**facts, "already_active": True})
        if version.state != "pending_approval":
            failure = {"failure": f"version_{version.state}"}
            return ExecutionOutcome(succeeded=False, facts={**facts, **failure})
        rule = await RuleRepository(session).get(
            tenant_id=action.tenant_id, rule_id=version.rule_id, for_update=True
        )
        invariant(rule is not None, "a version's rule exists")
        assert rule is not None  # for mypy; the invariant holds under -O
        ruleset_version = await _activate(
            session, rule=rule, version=version, by=action.decided_by, now_ns=action.decided_at
        )
        await _audit(
            session,
            rule=rule,
            action="risk.rule.activated",
            actor=action.decided_by,
            now_ns=action.decided_at,
            after={**_described(version), "ruleset_version": ruleset_version},
            detail={"approval_id": format_id(approvals.APPROVAL_ID_PREFIX, action.approval_id)},
        )
        return ExecutionOutcome(succeeded=True, facts={**facts, "ruleset_version": ruleset_version})

    async def _disable(
        self,
        session: AsyncSession,
        action: ApprovedAction,
        version: RiskRuleVersion,
        facts: dict[str, str | int | bool | None],
    ) -> ExecutionOutcome:
        rules = RuleRepository(session)
        rule = await rules.get(tenant_id=action.tenant_id, rule_id=version.rule_id, for_update=True)
        invariant(rule is not None, "a version's rule exists")
        assert rule is not None  # for mypy; the invariant holds under -O
        if rule.disable_approval_id != action.approval_id:
            return ExecutionOutcome(succeeded=False, facts={**facts, "failure": "not_requested"})
        if version.state == "disabled":  # executed before: nothing more to do
            return ExecutionOutcome(succeeded=True, facts={**facts, "already_disabled": True})
        if version.state != "active":  # another version took over since: not what was asked
            failure = {"failure": f"version_{version.state}"}
            return ExecutionOutcome(succeeded=False, facts={**facts, **failure})
        live = await rules.in_state(rule_id=rule.id, states=["active", "pending_approval"])
        ruleset_version = await _disable(
            session,
            rule=rule,
            live=live,
            actor=action.decided_by,
            now_ns=action.decided_at,
            detail={"approval_id": format_id(approvals.APPROVAL_ID_PREFIX, action.approval_id)},
        )
        return ExecutionOutcome(succeeded=True, facts={**facts, "ruleset_version": ruleset_version})

    async def _version(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, payload: str
    ) -> RiskRuleVersion | None:
        change = RiskRuleChangePayload.model_validate_json(payload)
        try:
            rule_id = parse_id(RULE_ID_PREFIX, change.rule_id)
        except InvalidId:
            return None
        return await RuleRepository(session).version(
            tenant_id=tenant_id, rule_id=rule_id, version=change.version
        )


def _described(version: RiskRuleVersion) -> dict[str, object]:
    return {
        "version": version.version,
        "state": version.state,
        "enforcement": version.enforcement,
        "action": version.action,
        "score": version.score,
        "expression": version.expression,
        "reason": version.reason,
        "responses": json.loads(version.responses),
    }


async def _audit(
    session: AsyncSession,
    *,
    rule: RiskRule,
    action: str,
    actor: uuid.UUID,
    now_ns: int,
    after: dict[str, object],
    detail: dict[str, object] | None = None,
) -> None:
    await audit.append(
        session,
        tenant_id=rule.tenant_id,
        action=action,
        occurred_at=now_ns,
        actor_type=ActorType.OPERATOR.value,
        actor_id=format_id(OPERATOR_ID_PREFIX, actor),
        target=format_id(RULE_ID_PREFIX, rule.id),
        after=after,
        detail={"name": rule.name, "mode": rule.mode, **(detail or {})},
    )

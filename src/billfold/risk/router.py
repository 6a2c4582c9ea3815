"""The risk API: rules (operators) and decisions (operators and API keys).

Rules are written by operators holding ``risk.rules.manage`` (risk analysts) and read by
those holding it or ``risk.rules.approve`` (compliance officers too); see ``changes`` for
when a version takes effect. Decisions are read by an operator holding ``risk.rules.manage``,
``risk.rules.approve`` or ``cases.review`` (in the ``mode`` the query names, ``live`` by
default), or by an API key with ``risk:read`` (in the key's own mode). Another tenant's
rule or decision is not found.

:func:`install_risk` puts the decision engine on ``app.state.risk``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BeforeValidator

from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators.auth import (
    ApiKeyCredentials,
    OperatorCredentials,
    authenticate_operator,
    presented_token,
    signed_in,
)
from billfold.identity.operators.errors import OperatorNotAuthenticated, PermissionDenied
from billfold.identity.operators.permissions import Permission
from billfold.identity.operators.tokens import SESSION_TOKEN_PREFIX
from billfold.identity.operators.types import OperatorPrincipal
from billfold.identity.types import Scope
from billfold.kit.auth import InsufficientScope, admit_request, counted_rate_limit_fields
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import BillfoldError
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX
from billfold.risk import changes, service
from billfold.risk.basic_features import MovementFeatures
from billfold.risk.changes import RULE_ID_PREFIX
from billfold.risk.rules import (
    FALLBACK_FEATURE_NAMES,
    RuleEvaluationError,
    bind_features,
    compile_expression,
    evaluate,
)
from billfold.risk.schemas import (
    DecisionDetail,
    DecisionPage,
    EvaluateRequest,
    EvaluateResponse,
    ModeName,
    RuleCreateRequest,
    RuleDetail,
    RulePage,
    RuleVersionRequest,
)
from billfold.risk.service import DECISION_ID_PREFIX, RiskEngine
from billfold.risk.types import Action, FeatureSource, MovementKind, ScorerRegistry

if TYPE_CHECKING:
    from fastapi import FastAPI

    from billfold.kit.settings import Settings

__all__ = ["install_risk", "router"]

_TAGS: list[str | Enum] = ["risk"]
router = APIRouter(prefix="/v1/risk", tags=_TAGS, responses=problem_responses(401, 403, 422))
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
_READ_RULES = frozenset({Permission.RISK_RULES_MANAGE, Permission.RISK_RULES_APPROVE})
_READ_DECISIONS = _READ_RULES | {Permission.CASES_REVIEW}
_clock = SystemClock()


def install_risk(
    app: FastAPI,
    settings: Settings,
    *,
    source: FeatureSource | None = None,
    registry: ScorerRegistry | None = None,
) -> RiskEngine:
    """The decision engine on ``app.state.risk``: over ``source`` (the movement's own
    features when None, until ``billfold.risk.features`` is wired), ``registry`` (no
    model when None) and the settings' model thresholds."""
    engine = RiskEngine(
        source or MovementFeatures(),
        registry=registry,
        model_review_score=settings.risk_model_review_score,
        model_block_score=settings.risk_model_block_score,
        ruleset_check_interval_s=settings.risk_ruleset_check_interval_s,
    )
    app.state.risk = engine
    return engine


def _forget(request: Request, tenant_id: uuid.UUID, mode: str) -> None:
    """After a committed change: this process's engine recompiles the tenant's rules."""
    engine = getattr(request.app.state, "risk", None)
    if isinstance(engine, RiskEngine):
        engine.forget(tenant_id, mode)


def _feature_names(request: Request) -> frozenset[str]:
    engine = getattr(request.app.state, "risk", None)
    return engine.source.names if isinstance(engine, RiskEngine) else FALLBACK_FEATURE_NAMES


def _holding_any(permissions: frozenset[Permission], principal: OperatorPrincipal) -> None:
    if not permissions & principal.permissions:
        needed = sorted(permission.value for permission in permissions)
        raise PermissionDenied(
            f"This needs one of the permissions {', '.join(needed)}.",
            required_permission=needed[0],
            required_permissions=needed,
        )


async def _manager(
    principal: Annotated[OperatorPrincipal, Depends(signed_in)],
) -> OperatorPrincipal:
    _holding_any(frozenset({Permission.RISK_RULES_MANAGE}), principal)
    return principal


async def _rule_reader(
    principal: Annotated[OperatorPrincipal, Depends(signed_in)],
) -> OperatorPrincipal:
    _holding_any(_READ_RULES, principal)
    return principal


Manager = Annotated[OperatorPrincipal, Depends(_manager)]
RuleReader = Annotated[OperatorPrincipal, Depends(_rule_reader)]


@dataclass(frozen=True, slots=True)
class DecisionReader:
    """Whose decisions the caller reads: a tenant and a mode."""

    tenant_id: uuid.UUID
    mode: str


async def _decision_reader(
    request: Request,
    response: Response,
    mode: Annotated[
        ModeName | None, Query(description="Operators: the mode to read (default live).")
    ] = None,
    _operator: OperatorCredentials = None,
    _api_key: ApiKeyCredentials = None,
) -> DecisionReader:
    """An operator session allowed to read decisions, or an API key with ``risk:read``."""
    token = presented_token(request)
    if token is not None and token.startswith(SESSION_TOKEN_PREFIX):
        principal = await signed_in(await authenticate_operator(request, response))
        _holding_any(_READ_DECISIONS, principal)
        return DecisionReader(tenant_id=principal.tenant_id, mode=mode or "live")
    try:
        key = await admit_request(request)
    except BillfoldError as error:
        if error.status == 401:
            raise OperatorNotAuthenticated() from None
        raise
    # The key's request was counted: its answer says where the key stands, as every
    # API-key route's does (`require_scopes`); only problems got the fields before.
    response.headers.update(counted_rate_limit_fields(request.scope))
    if Scope.RISK_READ.value not in {str(scope) for scope in key.scopes}:
        raise InsufficientScope(
            "This API key lacks the scopes: risk:read.", required_scopes=[Scope.RISK_READ.value]
        )
    return DecisionReader(tenant_id=key.tenant_id, mode=key.mode.value)


Reader = Annotated[DecisionReader, Depends(_decision_reader)]


@router.post(
    "/rules",
    status_code=201,
    summary="Create a rule: a shadow version is active at once, an enforcing one waits for"
    " a second operator's approval.",
    responses=problem_responses(409),
)
async def create_rule(
    body: RuleCreateRequest, principal: Manager, unit_of_work: Work, request: Request
) -> RuleDetail:
    async with unit_of_work.begin() as session:
        change = await changes.create_rule(
            session,
            principal=principal,
            mode=body.mode,
            name=body.name,
            draft=body.draft(),
            feature_names=_feature_names(request),
            now_ns=_clock.now_ns(),
        )
        rule, versions = await changes.get_rule(
            session, tenant_id=principal.tenant_id, rule_id=change.rule.id
        )
        detail = RuleDetail.of(rule, versions)
    _forget(request, principal.tenant_id, body.mode)
    return detail


@router.get("/rules", summary="The tenant's rules, oldest first.", responses=problem_responses(400))
async def list_rules(
    principal: RuleReader,
    unit_of_work: Work,
    mode: ModeName | None = None,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> RulePage:
    async with unit_of_work.read() as session:
        page = await changes.list_rules(
            session, tenant_id=principal.tenant_id, mode=mode, cursor=cursor, limit=limit
        )
        return RulePage.from_page(page)


@router.post(
    "/rules/evaluate",
    summary="Dry run: whether an expression holds on the given features (nothing stored).",
)
async def evaluate_rule(
    body: EvaluateRequest, principal: RuleReader, request: Request
) -> EvaluateResponse:
    names = _feature_names(request)
    program = compile_expression(body.expression, feature_names=names)
    try:
        matched = evaluate(program, bind_features(body.features, names))
    except RuleEvaluationError as error:
        return EvaluateResponse(matched=False, error=str(error))
    return EvaluateResponse(matched=matched, error=None)


@router.get(
    "/rules/{rule_id}", summary="A rule with its versions.", responses=problem_responses(404)
)
async def get_rule(rule_id: str, principal: RuleReader, unit_of_work: Work) -> RuleDetail:
    parsed = parse_id(RULE_ID_PREFIX, rule_id)
    async with unit_of_work.read() as session:
        rule, versions = await changes.get_rule(
            session, tenant_id=principal.tenant_id, rule_id=parsed
        )
        return RuleDetail.of(rule, versions)


@router.post(
    "/rules/{rule_id}/versions",
    status_code=201,
    summary="A new version of a rule (enforcing: waits for a second operator's approval).",
    responses=problem_responses(404),
)
async def add_version(
    rule_id: str,
    body: RuleVersionRequest,
    principal: Manager,
    unit_of_work: Work,
    request: Request,
) -> RuleDetail:
    parsed = parse_id(RULE_ID_PREFIX, rule_id)
    async with unit_of_work.begin() as session:
        await changes.add_version(
            session,
            principal=principal,
            rule_id=parsed,
            draft=body.draft(),
            feature_names=_feature_names(request),
            now_ns=_clock.now_ns(),
        )
        rule, versions = await changes.get_rule(
            session, tenant_id=principal.tenant_id, rule_id=parsed
        )
        detail = RuleDetail.of(rule, versions)
    _forget(request, principal.tenant_id, detail.mode)
    return detail


@router.post(
    "/rules/{rule_id}/disable",
    summary="Stop evaluating a rule: at once (200) when its active version is shadow; when"
    " it enforces, a second operator's approval is asked for (202, `disable_approval_id`)"
    " and the rule enforces until it executes.",
    responses={
        202: {"description": "Waiting for approval: the rule still enforces."},
        **problem_responses(404, 409),
    },
)
async def disable_rule(
    rule_id: str, principal: Manager, unit_of_work: Work, request: Request, response: Response
) -> RuleDetail:
    parsed = parse_id(RULE_ID_PREFIX, rule_id)
    async with unit_of_work.begin() as session:
        change = await changes.disable_rule(
            session, principal=principal, rule_id=parsed, now_ns=_clock.now_ns()
        )
        if change.disable_approval_id is not None:
            response.status_code = 202
        rule, versions = await changes.get_rule(
            session, tenant_id=principal.tenant_id, rule_id=parsed
        )
        detail = RuleDetail.of(rule, versions)
    _forget(request, principal.tenant_id, detail.mode)
    return detail


_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_8601_only(value: object) -> object:
    """`since` is an ISO 8601 time, as documented (`format: date-time`); pydantic would also
    read a number as seconds since the epoch, which the document does not allow."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO 8601 time, such as 2024-05-01T00:00:00Z")
    return value


@router.get(
    "/decisions",
    summary="The tenant's risk decisions, newest first.",
    responses=problem_responses(400, 429),
)
async def list_decisions(
    reader: Reader,
    unit_of_work: Work,
    user_id: Annotated[str | None, Query(max_length=40)] = None,
    action: Action | None = None,
    kind: MovementKind | None = None,
    since: Annotated[datetime | None, BeforeValidator(_iso_8601_only)] = None,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> DecisionPage:
    user = None if user_id is None else parse_id("usr", user_id)
    since_ns = None if since is None else _ns(since)
    async with unit_of_work.read() as session:
        page = await service.list_decisions(
            session,
            tenant_id=reader.tenant_id,
            mode=reader.mode,
            user_id=user,
            action=action,
            kind=None if kind is None else kind.value,
            since_ns=since_ns,
            cursor=cursor,
            limit=limit,
        )
        return DecisionPage.from_page(page)


@router.get(
    "/decisions/{decision_id}",
    summary="A decision explained: features, rule hits (shadow ones too), reasons, scores.",
    responses=problem_responses(400, 404, 429),
)
async def get_decision(decision_id: str, reader: Reader, unit_of_work: Work) -> DecisionDetail:
    parsed = parse_id(DECISION_ID_PREFIX, decision_id)
    async with unit_of_work.read() as session:
        row = await service.get_decision(
            session, tenant_id=reader.tenant_id, mode=reader.mode, decision_id=parsed
        )
        return DecisionDetail.of(row)


_NS_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (UTC when it names no zone), within
    the range a BIGINT column holds."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    nanoseconds = (aware - _EPOCH) // timedelta(microseconds=1) * 1_000
    return max(-_NS_MAX, min(_NS_MAX, nanoseconds))

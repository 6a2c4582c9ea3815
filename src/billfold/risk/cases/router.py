"""The HTTP layer of the review queue and the automated responses: parse, call, shape.

Every route needs an operator session with ``cases.review``, except asking for a reversal,
which needs ``risk.reverse.request`` (support may ask; a risk analyst or compliance
officer approves it at ``POST /v1/approvals/{id}/approve``). Each route sees only the
caller's tenant: another tenant's case or response is not found. Deciding a case moves
its held money through ``app.state.held_resolver``.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from billfold.flows import risk_cases as flow
from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators.auth import get_approval_executors, require_permission
from billfold.identity.operators.executors import ApprovalExecutors
from billfold.identity.operators.permissions import Permission
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import format_id, parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.risk.cases import responses, service
from billfold.risk.cases.errors import CaseHoldExpired, CaseNotOpen, HeldResolverUnavailable
from billfold.risk.cases.repository import CaseFilter
from billfold.risk.cases.resolver import HeldMovementResolver
from billfold.risk.cases.schemas import (
    CaseDecisionRequest,
    CaseDetailResponse,
    CaseLabelRequest,
    CasePage,
    CaseResponse,
    CaseState,
    NoteCreateRequest,
    NoteResponse,
    ResponseCreateRequest,
    ResponsePage,
    ReversalCreated,
    ReversalRequest,
    RiskResponseView,
)
from billfold.risk.types import MovementKind, Response

__all__ = ["router"]

router = APIRouter(prefix="/v1/risk", responses=problem_responses(401, 403, 404, 422))
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Reviewer = Annotated[OperatorPrincipal, Depends(require_permission(Permission.CASES_REVIEW))]
ReversalAsker = Annotated[
    OperatorPrincipal, Depends(require_permission(Permission.RISK_REVERSE_REQUEST))
]
Executors = Annotated[ApprovalExecutors, Depends(get_approval_executors)]
Cursor = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]
_CASES: list[str | Enum] = ["risk cases"]
_RESPONSES: list[str | Enum] = ["risk responses"]
_clock = SystemClock()


def _installed_resolver(request: Request) -> HeldMovementResolver | None:
    return getattr(request.app.state, "held_resolver", None)


def _held_resolver(request: Request) -> HeldMovementResolver:
    resolver = _installed_resolver(request)
    if resolver is None:
        raise HeldResolverUnavailable("The application has no resolver for held movements.")
    return resolver


def _ledger(request: Request) -> Ledger:
    ledger = getattr(request.app.state, "ledger", None)
    if not isinstance(ledger, Ledger):
        raise InvariantViolation("the app lifespan sets up app.state.ledger")
    return ledger


def _case_id(value: str) -> uuid.UUID:
    """A malformed id is 400 `invalid_id`, as on every other route (it was 404 here, while
    the document states the id's form)."""
    return parse_id(service.CASE_ID_PREFIX, value)


def _response_id(value: str) -> uuid.UUID:
    return parse_id(responses.RESPONSE_ID_PREFIX, value)


def _user_id(value: str) -> uuid.UUID:
    """A malformed `user_id` filter is 400 `invalid_id`, as on the decisions' list (it was
    404 `risk_subject_not_found` here, for a collection that exists)."""
    return parse_id("usr", value)


@router.get("/cases", tags=_CASES, summary="The review queue: oldest first, one page.")
async def list_cases(
    principal: Reviewer,
    unit_of_work: Work,
    state: Annotated[CaseState, Query()] = "open",
    kind: Annotated[MovementKind | None, Query()] = None,
    user_id: Annotated[str | None, Query(max_length=40)] = None,
    mode: Annotated[str | None, Query(pattern="^(test|live)$")] = None,
    cursor: Cursor = None,
    limit: Limit = None,
) -> CasePage:
    where = CaseFilter(
        state=state,
        kind=None if kind is None else kind.value,
        user_id=None if user_id is None else _user_id(user_id),
        mode=mode,
    )
    async with unit_of_work.read() as session:
        page = await service.list_cases(
            session, tenant_id=principal.tenant_id, where=where, cursor=cursor, limit=limit
        )
    return CasePage(
        items=[CaseResponse.from_model(item.case, item.state) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/cases/{case_id}",
    tags=_CASES,
    summary="A case with the decision's reasons, score and features, and its notes.",
)
async def get_case(case_id: str, principal: Reviewer, unit_of_work: Work) -> CaseDetailResponse:
    async with unit_of_work.read() as session:
        detail = await service.get_case(
            session, tenant_id=principal.tenant_id, case_id=_case_id(case_id)
        )
    return CaseDetailResponse.from_detail(detail)


@router.post(
    "/cases/{case_id}/notes", status_code=201, tags=_CASES, summary="Write a note on a case."
)
async def add_note(
    case_id: str, body: NoteCreateRequest, principal: Reviewer, unit_of_work: Work
) -> NoteResponse:
    async with unit_of_work.begin() as session:
        note = await service.add_note(
            session,
            tenant_id=principal.tenant_id,
            case_id=_case_id(case_id),
            author_id=principal.operator_id,
            body=body.body,
            now_ns=_clock.now_ns(),
        )
    return NoteResponse.from_model(note)


async def _decide(
    request: Request,
    case_id: str,
    body: CaseDecisionRequest | None,
    principal: OperatorPrincipal,
    unit_of_work: UnitOfWork,
    *,
    approve: bool,
) -> CaseDetailResponse:
    identifier = _case_id(case_id)
    async with unit_of_work.begin() as session:  # 404 and 409 come before a missing resolver
        seen = await service.get_case(session, tenant_id=principal.tenant_id, case_id=identifier)
    if seen.case.state != "open":
        raise CaseNotOpen(f"The case is {seen.state}.", case_state=seen.state)
    try:
        service.raise_if_undecidable(seen.case, approve=approve, now_ns=_clock.now_ns())
    except CaseHoldExpired:
        lapsed_resolver = _installed_resolver(request)
        if lapsed_resolver is not None:  # without one, nothing can void the hold yet
            await flow.expire_lapsed(
                unit_of_work,
                lapsed_resolver,
                principal=principal,
                case_id=identifier,
                clock=_clock,
            )
        raise
    resolver = _held_resolver(request)
    detail = await flow.decide_case(
        unit_of_work,
        resolver,
        principal=principal,
        case_id=identifier,
        approve=approve,
        note=None if body is None else body.note,
        clock=_clock,
    )
    return CaseDetailResponse.from_detail(detail)


@router.post(
    "/cases/{case_id}/approve",
    tags=_CASES,
    summary="Approve a held movement: the hold is posted; labelled legitimate.",
    responses=problem_responses(409, 503),
)
async def approve_case(
    request: Request,
    case_id: str,
    principal: Reviewer,
    unit_of_work: Work,
    body: CaseDecisionRequest | None = None,
) -> CaseDetailResponse:
    return await _decide(request, case_id, body, principal, unit_of_work, approve=True)


@router.post(
    "/cases/{case_id}/reject",
    tags=_CASES,
    summary="Reject a held movement: the hold is voided; labelled fraud.",
    responses=problem_responses(409, 503),
)
async def reject_case(
    request: Request,
    case_id: str,
    principal: Reviewer,
    unit_of_work: Work,
    body: CaseDecisionRequest | None = None,
) -> CaseDetailResponse:
    return await _decide(request, case_id, body, principal, unit_of_work, approve=False)


@router.post(
    "/cases/{case_id}/label",
    tags=_CASES,
    summary="Label the case's movement fraud or legitimate (the models learn from it).",
)
async def label_case(
    case_id: str, body: CaseLabelRequest, principal: Reviewer, unit_of_work: Work
) -> CaseDetailResponse:
    identifier = _case_id(case_id)
    async with unit_of_work.begin() as session:
        await service.label_case(
            session,
            tenant_id=principal.tenant_id,
            case_id=identifier,
            operator_id=principal.operator_id,
            fraud=body.fraud,
            now_ns=_clock.now_ns(),
        )
        detail = await service.get_case(session, tenant_id=principal.tenant_id, case_id=identifier)
    return CaseDetailResponse.from_detail(detail)


@router.post(
    "/responses",
    status_code=201,
    tags=_RESPONSES,
    summary="Apply a response to an end user by hand (freeze, lower limits, hold outgoing).",
)
async def apply_response(
    request: Request, body: ResponseCreateRequest, principal: Reviewer, unit_of_work: Work
) -> RiskResponseView:
    settings: Settings = request.app.state.settings
    response = await flow.apply_manual_response(
        unit_of_work,
        _ledger(request),
        principal=principal,
        user_id=_user_id(body.user_id),
        kind=Response(body.kind),
        reason=body.reason,
        limit_bps=settings.risk_lower_limits_bps if body.limit_bps is None else body.limit_bps,
        clock=_clock,
    )
    return RiskResponseView.from_model(response)


@router.get("/responses", tags=_RESPONSES, summary="Responses applied, newest first.")
async def list_responses(
    principal: Reviewer,
    unit_of_work: Work,
    user_id: Annotated[str | None, Query(max_length=40)] = None,
    state: Annotated[str | None, Query(pattern="^(active|reversing|reversed)$")] = None,
    cursor: Cursor = None,
    limit: Limit = None,
) -> ResponsePage:
    async with unit_of_work.read() as session:
        page = await responses.list_responses(
            session,
            tenant_id=principal.tenant_id,
            user_id=None if user_id is None else _user_id(user_id),
            state=state,
            cursor=cursor,
            limit=limit,
        )
    return ResponsePage(
        items=[RiskResponseView.from_model(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/responses/{response_id}", tags=_RESPONSES, summary="One response.")
async def get_response(
    response_id: str, principal: Reviewer, unit_of_work: Work
) -> RiskResponseView:
    async with unit_of_work.read() as session:
        response = await responses.get_response(
            session, tenant_id=principal.tenant_id, response_id=_response_id(response_id)
        )
    return RiskResponseView.from_model(response)


@router.post(
    "/responses/{response_id}/reverse",
    status_code=201,
    tags=_RESPONSES,
    summary="Ask for a response's reversal: it takes effect once a second operator approves.",
    responses=problem_responses(409, 503),
)
async def reverse_response(
    response_id: str,
    body: ReversalRequest,
    principal: ReversalAsker,
    unit_of_work: Work,
    executors: Executors,
) -> ReversalCreated:
    response, approval = await flow.request_reversal(
        unit_of_work,
        executors,
        principal=principal,
        response_id=_response_id(response_id),
        reason=body.reason,
        clock=_clock,
    )
    return ReversalCreated(
        response=RiskResponseView.from_model(response),
        approval_id=format_id("apr", approval.id),
        approval_status=approval.status,
    )

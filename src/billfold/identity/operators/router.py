"""The HTTP layer for operators and four-eyes approvals: parse, call, shape the response.

Every route needs an operator session (``Bearer bfo_…``) except signing in, which is public
on purpose, and creating an operator, which also takes a live ``tenant:admin`` API key. Each
route sees only the caller's tenant; another tenant's operator or request is not found.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Response

from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators import approvals, flows, service
from billfold.identity.operators.auth import (
    OperatorManager,
    get_approval_executors,
    operator_manager,
    require_permission,
    signed_in,
    signed_in_pending_password_change,
)
from billfold.identity.operators.errors import InvalidPassword, LoginFailed
from billfold.identity.operators.executors import ApprovalExecutors
from billfold.identity.operators.permissions import ActionType, Permission
from billfold.identity.operators.schemas import (
    ApprovalCreateRequest,
    ApprovalDecisionRequest,
    ApprovalPage,
    ApprovalRefusalRequest,
    ApprovalResponse,
    LoginRequest,
    OperatorCreated,
    OperatorCreateRequest,
    OperatorPage,
    OperatorResponse,
    OperatorSessionCreated,
    OperatorStatusRequest,
    PasswordChangeRequest,
    RolesUpdateRequest,
)
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, OperatorPrincipal
from billfold.identity.schemas import TENANT_ID_PREFIX
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.http.caching import no_store
from billfold.kit.http.openapi import problem_responses
from billfold.kit.http.rate_limit import throttle_sign_in
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX

__all__ = ["router"]

router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 422))
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Executors = Annotated[ApprovalExecutors, Depends(get_approval_executors)]
SignedIn = Annotated[OperatorPrincipal, Depends(signed_in)]
Manager = Annotated[OperatorPrincipal, Depends(require_permission(Permission.OPERATORS_MANAGE))]
Cursor = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]
_clock = SystemClock()
_OPERATORS: list[str | Enum] = ["operators"]
_APPROVALS: list[str | Enum] = ["approvals"]


@router.post(
    "/operators/login",
    dependencies=[Depends(throttle_sign_in), Depends(no_store)],
    status_code=201,
    tags=_OPERATORS,
    summary="Sign in with email and password: a one-hour session token (public route).",
)
async def log_in(body: LoginRequest, unit_of_work: Work) -> OperatorSessionCreated:
    tenant_id = parse_id(TENANT_ID_PREFIX, body.tenant_id)
    async with unit_of_work.begin() as session:
        login = await service.log_in(
            session,
            tenant_id=tenant_id,
            email=body.email,
            password=body.password,
            now_ns=_clock.now_ns(),
        )
    # Raised after the commit: the failure's count and security event must be kept.
    if login is None:
        raise LoginFailed()
    return OperatorSessionCreated.from_login(login)


@router.post("/operators/logout", status_code=204, tags=_OPERATORS, summary="End this session now.")
async def log_out(
    principal: Annotated[OperatorPrincipal, Depends(signed_in_pending_password_change)],
    unit_of_work: Work,
) -> Response:
    async with unit_of_work.begin() as session:
        await service.log_out(session, principal=principal, now_ns=_clock.now_ns())
    return Response(status_code=204)


@router.get("/operators/me", tags=_OPERATORS, summary="The signed-in operator.")
async def get_me(
    principal: Annotated[OperatorPrincipal, Depends(signed_in_pending_password_change)],
    unit_of_work: Work,
) -> OperatorResponse:
    async with unit_of_work.read() as session:
        operator = await service.get_operator(
            session, tenant_id=principal.tenant_id, operator_id=principal.operator_id
        )
        return OperatorResponse.from_model(operator)


@router.post(
    "/operators/me/password",
    tags=_OPERATORS,
    summary="Change the signed-in operator's password; its other sessions end.",
)
async def change_password(
    body: PasswordChangeRequest,
    principal: Annotated[OperatorPrincipal, Depends(signed_in_pending_password_change)],
    unit_of_work: Work,
) -> OperatorResponse:
    async with unit_of_work.begin() as session:
        operator = await service.change_password(
            session,
            principal=principal,
            current_password=body.current_password,
            new_password=body.new_password,
            now_ns=_clock.now_ns(),
        )
    if operator is None:  # refused, the failure committed (counted and recorded)
        raise InvalidPassword("The current password is wrong.")
    return OperatorResponse.from_model(operator)


@router.post(
    "/operators",
    dependencies=[Depends(no_store)],
    status_code=201,
    tags=_OPERATORS,
    summary="Create an operator; its one-time password is in this response only.",
    responses=problem_responses(404, 409),
)
async def create_operator(
    body: OperatorCreateRequest,
    manager: Annotated[OperatorManager, Depends(operator_manager)],
    unit_of_work: Work,
) -> OperatorCreated:
    async with unit_of_work.begin() as session:
        created = await service.create_operator(
            session,
            tenant_id=manager.tenant_id,
            email=body.email,
            display_name=body.display_name,
            roles=body.roles,
            password=None,
            actor=manager.actor,
            now_ns=_clock.now_ns(),
        )
    assert created.one_time_password is not None  # no password given: one was generated
    return OperatorCreated.from_created(
        created.operator, one_time_password=created.one_time_password
    )


@router.get(
    "/operators",
    tags=_OPERATORS,
    summary="List the tenant's operators, oldest first.",
    responses=problem_responses(400),
)
async def list_operators(
    principal: Manager, unit_of_work: Work, cursor: Cursor = None, limit: Limit = None
) -> OperatorPage:
    async with unit_of_work.read() as session:
        page = await service.list_operators(
            session, tenant_id=principal.tenant_id, cursor=cursor, limit=limit
        )
        return OperatorPage.from_page(page)


@router.get(
    "/operators/{operator_id}",
    tags=_OPERATORS,
    summary="Get one operator.",
    responses=problem_responses(400, 404),
)
async def get_operator(
    operator_id: str, principal: Manager, unit_of_work: Work
) -> OperatorResponse:
    parsed = parse_id(OPERATOR_ID_PREFIX, operator_id)
    async with unit_of_work.read() as session:
        operator = await service.get_operator(
            session, tenant_id=principal.tenant_id, operator_id=parsed
        )
        return OperatorResponse.from_model(operator)


@router.put(
    "/operators/{operator_id}/roles",
    tags=_OPERATORS,
    summary="Replace another operator's roles (never one's own).",
    responses=problem_responses(400, 404, 409),
)
async def set_roles(
    operator_id: str, body: RolesUpdateRequest, principal: Manager, unit_of_work: Work
) -> OperatorResponse:
    parsed = parse_id(OPERATOR_ID_PREFIX, operator_id)
    async with unit_of_work.begin() as session:
        operator = await service.set_operator_roles(
            session,
            principal=principal,
            tenant_id=principal.tenant_id,
            operator_id=parsed,
            roles=body.roles,
            actor=principal.actor,
            now_ns=_clock.now_ns(),
        )
    return OperatorResponse.from_model(operator)


@router.post(
    "/operators/{operator_id}/disable",
    tags=_OPERATORS,
    summary="Disable another operator: its sessions end at once.",
    responses=problem_responses(400, 404, 409),
)
async def disable_operator(
    operator_id: str,
    principal: Manager,
    unit_of_work: Work,
    body: OperatorStatusRequest | None = None,
) -> OperatorResponse:
    return await _set_status(
        operator_id, active=False, body=body, principal=principal, unit_of_work=unit_of_work
    )


@router.post(
    "/operators/{operator_id}/enable",
    tags=_OPERATORS,
    summary="Enable a disabled operator again.",
    responses=problem_responses(400, 404, 409),
)
async def enable_operator(
    operator_id: str,
    principal: Manager,
    unit_of_work: Work,
    body: OperatorStatusRequest | None = None,
) -> OperatorResponse:
    return await _set_status(
        operator_id, active=True, body=body, principal=principal, unit_of_work=unit_of_work
    )


async def _set_status(
    operator_id: str,
    *,
    active: bool,
    body: OperatorStatusRequest | None,
    principal: OperatorPrincipal,
    unit_of_work: UnitOfWork,
) -> OperatorResponse:
    parsed = parse_id(OPERATOR_ID_PREFIX, operator_id)
    # Cleaned as an approval's reason is: a blank one or control characters are 422.
    reason = None if body is None or body.reason is None else approvals.clean_note(body.reason)
    async with unit_of_work.begin() as session:
        operator = await service.set_operator_status(
            session,
            principal=principal,
            tenant_id=principal.tenant_id,
            operator_id=parsed,
            active=active,
            actor=principal.actor,
            now_ns=_clock.now_ns(),
            reason=reason,
        )
    return OperatorResponse.from_model(operator)


@router.post(
    "/approvals",
    status_code=201,
    tags=_APPROVALS,
    summary="Ask for a sensitive action; a different operator must approve it.",
    description=(
        "The request is checked first: one that could not execute as it stands (an account"
        " or a holder that does not exist, a limit increase for a disabled or erased user,"
        " an unknown limit, ...) is refused with a problem naming why, and nothing is"
        " stored. An operator has at most"
        f" {approvals.PENDING_APPROVALS_PER_REQUESTER_MAX} pending requests"
        " (`requester_pending_approval_limit_reached`), a tenant at most"
        f" {approvals.PENDING_APPROVALS_PER_TENANT_MAX} (`pending_approval_limit_reached`)."
    ),
    responses=problem_responses(404, 409, 503),
)
async def create_approval(
    body: Annotated[ApprovalCreateRequest, Body()],
    principal: SignedIn,
    unit_of_work: Work,
    executors: Executors,
) -> ApprovalResponse:
    approval = await flows.request_approval(
        unit_of_work,
        executors,
        principal=principal,
        action_type=ActionType(body.action_type),
        payload=body.payload.model_dump(mode="json"),
        reason=body.reason,
        expires_in_s=body.expires_in_s,
        clock=_clock,
    )
    return ApprovalResponse.from_model(approval)


@router.get(
    "/approvals",
    tags=_APPROVALS,
    summary="List the requests the caller may ask for or decide, newest first.",
    responses=problem_responses(400),
)
async def list_approvals(
    principal: SignedIn,
    unit_of_work: Work,
    status: Annotated[
        Literal["pending", "approved", "refused", "expired", "executed", "failed"] | None,
        Query(),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = None,
) -> ApprovalPage:
    async with unit_of_work.read() as session:
        page = await approvals.list_approvals(
            session, principal=principal, status=status, cursor=cursor, limit=limit
        )
        return ApprovalPage.from_page(page)


@router.get(
    "/approvals/{approval_id}",
    tags=_APPROVALS,
    summary="Get one approval request.",
    responses=problem_responses(400, 404),
)
async def get_approval(
    approval_id: str, principal: SignedIn, unit_of_work: Work
) -> ApprovalResponse:
    parsed = _approval_id(approval_id)
    async with unit_of_work.read() as session:
        approval = await approvals.get_approval(session, principal=principal, approval_id=parsed)
        return ApprovalResponse.from_model(approval)


@router.post(
    "/approvals/{approval_id}/approve",
    tags=_APPROVALS,
    summary="Approve someone else's request; it executes at once (see `status`, `result`).",
    responses=problem_responses(400, 404, 409, 503),
)
async def approve(
    approval_id: str,
    principal: SignedIn,
    unit_of_work: Work,
    executors: Executors,
    body: ApprovalDecisionRequest | None = None,
) -> ApprovalResponse:
    approval = await flows.decide_approval(
        unit_of_work,
        executors,
        principal=principal,
        approval_id=_approval_id(approval_id),
        approve=True,
        note=None if body is None else body.note,
        clock=_clock,
    )
    return ApprovalResponse.from_model(approval)


@router.post(
    "/approvals/{approval_id}/refuse",
    tags=_APPROVALS,
    summary="Refuse someone else's request; nothing executes.",
    responses=problem_responses(400, 404, 409),
)
async def refuse(
    approval_id: str,
    body: ApprovalRefusalRequest,
    principal: SignedIn,
    unit_of_work: Work,
    executors: Executors,
) -> ApprovalResponse:
    approval = await flows.decide_approval(
        unit_of_work,
        executors,
        principal=principal,
        approval_id=_approval_id(approval_id),
        approve=False,
        note=body.note,
        clock=_clock,
    )
    return ApprovalResponse.from_model(approval)


def _approval_id(text: str) -> uuid.UUID:
    return parse_id(approvals.APPROVAL_ID_PREFIX, text)

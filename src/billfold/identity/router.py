"""The HTTP layer for a tenant's API keys: parse, call the service, shape the response.

Every route requires ``tenant:admin`` and sees only the caller's tenant and mode. Tenants
themselves are created from the command line (`billfold tenant create`), not over HTTP.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billfold.identity import service
from billfold.identity.auth import get_unit_of_work, require_scopes
from billfold.identity.schemas import (
    API_KEY_ID_PREFIX,
    ApiKeyCreated,
    ApiKeyCreateRequest,
    ApiKeyPage,
    ApiKeyResponse,
    ns_from_datetime,
)
from billfold.identity.types import Principal, Scope
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.http.caching import no_store
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["api keys"],
    responses=problem_responses(401, 403, 422),
)
Admin = Annotated[Principal, Depends(require_scopes(Scope.TENANT_ADMIN))]
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
_clock = SystemClock()


@router.post(
    "/api-keys",
    dependencies=[Depends(no_store)],
    status_code=201,
    summary="Create an API key; its secret is in this response only.",
    responses=problem_responses(409),
)
async def create_api_key(
    body: ApiKeyCreateRequest, principal: Admin, unit_of_work: Work
) -> ApiKeyCreated:
    expires_at_ns = None if body.expires_at is None else ns_from_datetime(body.expires_at)
    async with unit_of_work.begin() as session:
        created = await service.grant_api_key(
            session,
            principal=principal,
            name=body.name,
            mode=body.mode,
            scopes=body.scopes,
            expires_at_ns=expires_at_ns,
            now_ns=_clock.now_ns(),
        )
    return ApiKeyCreated.from_created(created.api_key, secret=created.secret)


@router.get(
    "/api-keys",
    summary="List the tenant's API keys for the caller's mode, oldest first.",
    responses=problem_responses(400),
)
async def list_api_keys(
    principal: Admin,
    unit_of_work: Work,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> ApiKeyPage:
    async with unit_of_work.read() as session:
        page = await service.list_api_keys(session, principal=principal, cursor=cursor, limit=limit)
        return ApiKeyPage.from_page(page)


@router.get(
    "/api-keys/{api_key_id}",
    summary="Get one API key (never its secret).",
    responses=problem_responses(400, 404),
)
async def get_api_key(api_key_id: str, principal: Admin, unit_of_work: Work) -> ApiKeyResponse:
    parsed_id = parse_id(API_KEY_ID_PREFIX, api_key_id)
    async with unit_of_work.read() as session:
        api_key = await service.get_api_key(session, principal=principal, api_key_id=parsed_id)
        return ApiKeyResponse.from_model(api_key)


@router.post(
    "/api-keys/{api_key_id}/revoke",
    summary="Revoke an API key at once; revoking it again changes nothing.",
    responses=problem_responses(400, 404),
)
async def revoke_api_key(api_key_id: str, principal: Admin, unit_of_work: Work) -> ApiKeyResponse:
    parsed_id = parse_id(API_KEY_ID_PREFIX, api_key_id)
    async with unit_of_work.begin() as session:
        api_key = await service.revoke_api_key(
            session, principal=principal, api_key_id=parsed_id, now_ns=_clock.now_ns()
        )
    return ApiKeyResponse.from_model(api_key)

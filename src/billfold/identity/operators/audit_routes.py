"""The tenant's audit log for its back office: operators holding ``audit.read`` (admin,
compliance officer) read their own tenant's chain, its latest checkpoint and inclusion
proofs. The same data as ``/v1/audit/…`` (API keys), behind an operator session."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billfold.audit import service as audit
from billfold.audit.schemas import (
    ENTRY_ID_PREFIX,
    AuditEntryPage,
    CheckpointResponse,
    InclusionProofResponse,
)
from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators.auth import require_permission
from billfold.identity.operators.permissions import Permission
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.db import UnitOfWork
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX

__all__ = ["router"]

_TAGS: list[str | Enum] = ["operators", "audit"]
router = APIRouter(prefix="/v1/operators/audit", tags=_TAGS, responses=problem_responses(401, 403))
Reader = Annotated[OperatorPrincipal, Depends(require_permission(Permission.AUDIT_READ))]
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]


@router.get(
    "/entries",
    summary="The tenant's audit entries in chain order.",
    responses=problem_responses(400, 422),
)
async def list_entries(
    principal: Reader,
    unit_of_work: Work,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> AuditEntryPage:
    async with unit_of_work.read() as session:
        page = await audit.list_entries(
            session, tenant_id=principal.tenant_id, cursor=cursor, limit=limit
        )
        return AuditEntryPage.from_page(page)


@router.get(
    "/entries/{entry_id}/proof",
    summary="An inclusion proof of the entry in the signed checkpoint covering it.",
    responses=problem_responses(400, 404, 409),
)
async def prove_entry(
    entry_id: str, principal: Reader, unit_of_work: Work
) -> InclusionProofResponse:
    parsed = parse_id(ENTRY_ID_PREFIX, entry_id)
    async with unit_of_work.read() as session:
        proof = await audit.prove_inclusion(session, tenant_id=principal.tenant_id, entry_id=parsed)
        return InclusionProofResponse.from_proof(proof)


@router.get(
    "/checkpoints/latest",
    summary="The tenant chain's most recent signed checkpoint.",
    responses=problem_responses(404, 409),
)
async def latest_checkpoint(principal: Reader, unit_of_work: Work) -> CheckpointResponse:
    async with unit_of_work.read() as session:
        checkpoint = await audit.latest_checkpoint(session, tenant_id=principal.tenant_id)
        return CheckpointResponse.from_checkpoint(
            checkpoint, message=audit.signed_message(checkpoint)
        )

"""The audit log over HTTP: a tenant reads its own chain, checkpoints and inclusion proofs.

Every route needs a **live** API key with ``audit:read``: the chain records the tenant's
live acts too, and a test-mode key is the sandbox credential. Another tenant's entry or
checkpoint is a 404 exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from billfold.audit import service
from billfold.audit.errors import LiveKeyRequired
from billfold.audit.models import AuditCheckpoint
from billfold.audit.schemas import (
    CHECKPOINT_ID_PREFIX,
    ENTRY_ID_PREFIX,
    AuditEntryPage,
    AuditEntryResponse,
    CheckpointResponse,
    InclusionProofResponse,
)
from billfold.kit.auth import Mode, Principal, require_scopes
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX

__all__ = ["AUDIT_READ", "router"]

AUDIT_READ = "audit:read"

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 429))


async def _live_reader(
    principal: Annotated[Principal, Depends(require_scopes(AUDIT_READ))],
) -> Principal:
    if principal.mode is not Mode.LIVE:
        raise LiveKeyRequired("The audit log is read with a live API key.")
    return principal


def _unit_of_work(request: Request) -> UnitOfWork:
    unit_of_work = getattr(request.app.state, "unit_of_work", None)
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


Reader = Annotated[Principal, Depends(_live_reader)]
Work = Annotated[UnitOfWork, Depends(_unit_of_work)]


@router.get(
    "/entries",
    summary="The tenant's audit entries in chain order.",
    responses=problem_responses(400),
)
async def list_entries(
    principal: Reader,
    unit_of_work: Work,
    cursor: Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> AuditEntryPage:
    async with unit_of_work.read() as session:
        page = await service.list_entries(
            session, tenant_id=principal.tenant_id, cursor=cursor, limit=limit
        )
        return AuditEntryPage.from_page(page)


@router.get(
    "/entries/{entry_id}",
    summary="One audit entry.",
    responses=problem_responses(400, 404),
)
async def get_entry(entry_id: str, principal: Reader, unit_of_work: Work) -> AuditEntryResponse:
    parsed = parse_id(ENTRY_ID_PREFIX, entry_id)
    async with unit_of_work.read() as session:
        entry = await service.get_entry(session, tenant_id=principal.tenant_id, entry_id=parsed)
        return AuditEntryResponse.from_entry(entry)


@router.get(
    "/entries/{entry_id}/proof",
    summary="An RFC 9162 inclusion proof of the entry in the signed checkpoint covering it.",
    responses=problem_responses(400, 404, 409),
)
async def prove_entry(
    entry_id: str, principal: Reader, unit_of_work: Work
) -> InclusionProofResponse:
    parsed = parse_id(ENTRY_ID_PREFIX, entry_id)
    async with unit_of_work.read() as session:
        proof = await service.prove_inclusion(
            session, tenant_id=principal.tenant_id, entry_id=parsed
        )
        return InclusionProofResponse.from_proof(proof)


@router.get(
    "/checkpoints/latest",
    summary="The tenant chain's most recent signed checkpoint.",
    responses=problem_responses(404, 409),
)
async def latest_checkpoint(principal: Reader, unit_of_work: Work) -> CheckpointResponse:
    async with unit_of_work.read() as session:
        checkpoint = await service.latest_checkpoint(session, tenant_id=principal.tenant_id)
        return _checkpoint(checkpoint)


@router.get(
    "/checkpoints/{checkpoint_id}",
    summary="One signed checkpoint.",
    responses=problem_responses(400, 404, 409),
)
async def get_checkpoint(
    checkpoint_id: str, principal: Reader, unit_of_work: Work
) -> CheckpointResponse:
    parsed = parse_id(CHECKPOINT_ID_PREFIX, checkpoint_id)
    async with unit_of_work.read() as session:
        checkpoint = await service.get_checkpoint(
            session, tenant_id=principal.tenant_id, checkpoint_id=parsed
        )
        return _checkpoint(checkpoint)


def _checkpoint(checkpoint: AuditCheckpoint) -> CheckpointResponse:
    return CheckpointResponse.from_checkpoint(
        checkpoint, message=service.signed_message(checkpoint)
    )

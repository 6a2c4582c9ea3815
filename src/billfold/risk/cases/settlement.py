"""Moving a decided case's held money, and expiring open cases past their hold: the one
path every caller takes (the case API, the review queue's recovery sweep and payments'
recovery loop), so that a case's claim, its resolution and its audit entry always come
before any money moves.

Expiry claims each case first (``open → expired``, by the same conditional UPDATE an
analyst's decision uses), with its resolution ``pending`` and a ``risk.case.expired``
audit entry, in one transaction per case; only then is the hold voided through the resolver. Of
an analyst's approval and the expiry exactly one wins: the other finds the case no longer
open (the analyst gets ``409 case_not_open``; the expiry leaves the case alone). Voiding
first and closing the case after, as payments once did, let an approval land in between:
the case ``approved`` and its payment failed ``risk_review_expired``.
"""

from __future__ import annotations

import uuid

import structlog

from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.risk.cases import service
from billfold.risk.cases.models import ERROR_LENGTH_MAX
from billfold.risk.cases.repository import CaseRepository
from billfold.risk.cases.resolver import HeldMovementResolver
from billfold.risk.models import RiskCase

__all__ = ["EXPIRE_MAX", "expire_case", "expire_due", "settle_case"]

EXPIRE_MAX = 1_000
"""The most cases one expiry round claims."""

log = structlog.get_logger(__name__)


async def settle_case(
    unit_of_work: UnitOfWork, resolver: HeldMovementResolver, *, case_id: uuid.UUID, now_ns: int
) -> bool:
    """Move a decided case's held money and mark its resolution settled; False (recorded
    on the resolution) when the resolver failed."""
    async with unit_of_work.begin() as session:
        cases = CaseRepository(session)
        resolution = await cases.resolution(case_id)
        if resolution is None or resolution.state == "settled":
            return resolution is not None
        tenant_id, mode = resolution.tenant_id, resolution.mode
        reference, approve = resolution.reference, resolution.approve
        case = await cases.get(tenant_id=tenant_id, case_id=case_id)
        expired = case is not None and case.state == "expired"
    try:
        await resolver.resolve(
            tenant_id=tenant_id, mode=mode, reference=reference, approve=approve, expired=expired
        )
    except Exception as error:  # any failure: the money did not move; retried by recovery
        log.warning(
            "risk.case.resolve_failed",
            case_id=format_id(service.CASE_ID_PREFIX, case_id),
            error=type(error).__name__,
        )
        async with unit_of_work.begin() as session:
            await CaseRepository(session).record_failure(
                case_id=case_id, error=type(error).__name__[:ERROR_LENGTH_MAX]
            )
        return False
    async with unit_of_work.begin() as session:
        await CaseRepository(session).settle(case_id=case_id, now_ns=now_ns)
    return True


async def expire_due(
    unit_of_work: UnitOfWork, resolver: HeldMovementResolver, *, now_ns: int, limit: int
) -> int:
    """Expire up to `limit` open cases whose hold lapsed at or before `now_ns`: claim each
    (resolution and audit entry with it), then void its hold; how many this call claimed
    (a case decided meanwhile is not one of them)."""
    if limit < 1:
        return 0
    async with unit_of_work.begin() as session:
        due = [
            case.id
            for case in await CaseRepository(session).due_for_expiry(
                now_ns=now_ns, limit=min(limit, EXPIRE_MAX)
            )
        ]
    expired = [case_id for case_id in due if await _claim_expiry(unit_of_work, case_id, now_ns)]
    for case_id in expired:
        await _void_expired(unit_of_work, resolver, case_id=case_id, now_ns=now_ns)
    return len(expired)


async def expire_case(
    unit_of_work: UnitOfWork,
    resolver: HeldMovementResolver,
    *,
    tenant_id: uuid.UUID,
    case_id: uuid.UUID,
    now_ns: int,
) -> bool:
    """Expire one open case of the tenant whose hold lapsed at or before `now_ns`, as
    :func:`expire_due` does (claim, then void): for an approval refused
    ``case_hold_expired``, so the case does not wait for the sweep. Whether this call
    expired it: False when it is not the tenant's, its hold has not lapsed, or it is no
    longer open (decided, or claimed by the sweep meanwhile: the claim is the same
    conditional UPDATE, so exactly one of the two expires it and voids its hold)."""
    if not await _claim_expiry(unit_of_work, case_id, now_ns, tenant_id=tenant_id):
        return False
    await _void_expired(unit_of_work, resolver, case_id=case_id, now_ns=now_ns)
    return True


async def _void_expired(
    unit_of_work: UnitOfWork, resolver: HeldMovementResolver, *, case_id: uuid.UUID, now_ns: int
) -> None:
    """Void the hold of a case just claimed ``expired`` (retried by recovery on failure)."""
    await settle_case(unit_of_work, resolver, case_id=case_id, now_ns=now_ns)
    log.info("risk.case.expired", case_id=format_id(service.CASE_ID_PREFIX, case_id))


async def _claim_expiry(
    unit_of_work: UnitOfWork,
    case_id: uuid.UUID,
    now_ns: int,
    *,
    tenant_id: uuid.UUID | None = None,
) -> bool:
    """Claim one case ``expired`` in a transaction of its own: it locks the case, then the
    audit log's head, in the order an analyst's decision does. Claiming a whole batch in
    one transaction held several cases while waiting for the audit log, and deadlocked
    with a decision holding one of them (PostgreSQL then aborted one side: a 500). Only an
    open case whose hold lapsed at `now_ns` (of `tenant_id`, when given) is claimed."""
    async with unit_of_work.begin() as session:
        case = await session.get(RiskCase, case_id)
        if case is None or case.state != "open" or case.hold_expires_at > now_ns:
            return False
        if tenant_id is not None and case.tenant_id != tenant_id:
            return False
        return await service.claim_expiry(session, case=case, now_ns=now_ns)

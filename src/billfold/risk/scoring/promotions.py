"""Four eyes on promoting a risk model: an active model may send movements to review or
block them, so a version becomes active only when a second operator approves.

``POST /v1/risk/models/{id}/promote`` (``risk.models.manage``) asks: the version records
the request (``promotion_approval_id``), an approval request of type
``risk_model_promotion`` is made, and the version stays as it is. A *different* operator
holding ``risk.models.approve`` approves it at ``POST /v1/approvals/{id}/approve``; then
:class:`ModelPromotionExecutor` promotes it (``service.promote``: the active version of its
kind retired, audited) in the approval's own transaction. Engines pick the new version up
at their registry's next refresh (``BILLFOLD_RISK_MODELS_REFRESH_INTERVAL_S``). Asking for
an active version changes nothing; asking again while a request waits is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.operators import approvals
from billfold.identity.operators.executors import ApprovedAction, ExecutionOutcome
from billfold.identity.operators.payloads import RiskModelPromotionPayload
from billfold.identity.operators.permissions import ActionType
from billfold.identity.operators.types import OPERATOR_ID_PREFIX, OperatorPrincipal
from billfold.kit.ids import InvalidId, format_id, parse_id
from billfold.risk.scoring import repository
from billfold.risk.scoring.errors import ModelNotFound, ModelPromotionPending
from billfold.risk.scoring.models import RiskModelVersion
from billfold.risk.scoring.service import MODEL_ID_PREFIX, Actor, promote

__all__ = ["ModelPromotionExecutor", "PromotionRequest", "request_promotion"]


@dataclass(frozen=True, slots=True)
class PromotionRequest:
    model: RiskModelVersion
    approval_id: uuid.UUID | None
    """The request made; None when the version was already active (nothing to ask)."""


async def request_promotion(
    session: AsyncSession, *, principal: OperatorPrincipal, model_id: uuid.UUID, now_ns: int
) -> PromotionRequest:
    """Ask a second operator to make the tenant's version active (see the module)."""
    row = await repository.get_version(
        session, tenant_id=principal.tenant_id, model_id=model_id, for_update=True
    )
    if row is None:
        raise ModelNotFound("No such model version for this tenant.")
    if row.status == "active":
        return PromotionRequest(model=row, approval_id=None)
    asked = await approvals.still_waiting(
        session, tenant_id=row.tenant_id, approval_id=row.promotion_approval_id
    )
    if asked is not None:
        raise ModelPromotionPending(
            "Promoting this version already waits for approval"
            f" {format_id(approvals.APPROVAL_ID_PREFIX, asked.id)}."
        )
    payload = {"model_id": format_id(MODEL_ID_PREFIX, row.id)}
    reason = f"Promote risk model {row.name} v{row.version} ({row.kind}, {row.mode})"
    approval = await approvals.create_approval_request(
        session,
        principal=principal,
        action_type=ActionType.RISK_MODEL_PROMOTION,
        payload=payload,
        reason=reason,
        expires_in_s=None,
        now_ns=now_ns,
    )
    row.promotion_approval_id = approval.id
    await session.flush()
    await audit.append(
        session,
        tenant_id=row.tenant_id,
        action="risk.model.promotion_requested",
        occurred_at=now_ns,
        actor_type="operator",
        actor_id=format_id(OPERATOR_ID_PREFIX, principal.operator_id),
        target=format_id(MODEL_ID_PREFIX, row.id),
        after={"status": row.status},
        detail={"approval_id": format_id(approvals.APPROVAL_ID_PREFIX, approval.id)},
    )
    return PromotionRequest(model=row, approval_id=approval.id)


class ModelPromotionExecutor:
    """The transactional executor of ``risk_model_promotion`` (installed by
    ``billfold.flows.approvals.approval_executors``)."""

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        row = await self._version(session, tenant_id=action.tenant_id, payload=action.payload)
        if row is None:
            return ExecutionOutcome(succeeded=False, facts={"failure": "model_not_found"})
        facts: dict[str, str | int | bool | None] = {
            "model_id": format_id(MODEL_ID_PREFIX, row.id),
            "version": row.version,
        }
        if row.promotion_approval_id != action.approval_id:
            return ExecutionOutcome(succeeded=False, facts={**facts, "failure": "not_requested"})
        if row.status == "active":  # executed before: nothing more to do
            return ExecutionOutcome(succeeded=True, facts={**facts, "already_active": True})
        approver = Actor(
            actor_type="operator", actor_id=format_id(OPERATOR_ID_PREFIX, action.decided_by)
        )
        await promote(
            session,
            tenant_id=action.tenant_id,
            model_id=row.id,
            actor=approver,
            now_ns=action.decided_at,
        )
        return ExecutionOutcome(succeeded=True, facts={**facts, "status": "active"})

    async def _version(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, payload: str
    ) -> RiskModelVersion | None:
        promotion = RiskModelPromotionPayload.model_validate_json(payload)
        try:
            model_id = parse_id(MODEL_ID_PREFIX, promotion.model_id)
        except InvalidId:
            return None
        return await repository.get_version(
            session, tenant_id=tenant_id, model_id=model_id, for_update=True
        )

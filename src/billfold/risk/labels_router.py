"""Labels over HTTP: `POST /v1/risk/labels` records whether a movement was fraud.

For a tenant's backend with an API key carrying `risk:write`; only the ``simulator``
source is accepted here (a simulated workload's ground truth, `billfold simulate
--label`): analysts label through their cases, lost chargebacks label themselves. The
label is linked to the latest risk decision stored for the reference, when there is one,
so that a model learns from the features that decision saw.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import select

from billfold.kit.auth import Principal, require_scopes
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, parse_id
from billfold.risk.labels import LabelSource, record_label
from billfold.risk.models import RiskDecision

__all__ = ["RISK_WRITE", "LabelCreate", "LabelResponse", "router"]

RISK_WRITE = "risk:write"
DECISION_PREFIX = "rdc"
REFERENCE_PATTERN = r"^[a-z]{2,8}_[0-9a-f]{32}$"
"""A movement's API id (`pay_…`, `ref_…`, `cnv_…`) or a decision's (`rdc_…`)."""

router = APIRouter(prefix="/v1", tags=["risk"])
Writer = Annotated[Principal, Depends(require_scopes(RISK_WRITE))]


class LabelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(pattern=REFERENCE_PATTERN, max_length=64)
    fraud: StrictBool
    source: Literal["simulator"] = Field(
        description="Only `simulator` through the API (analysts label through cases)."
    )


class LabelResponse(BaseModel):
    reference: str
    fraud: bool
    source: str
    decision_id: str | None
    """`rdc_…`: the decision the label is linked to, when one was stored for the reference."""
    changed: bool
    """False when the same label was already there."""


def _unit_of_work(request: Request) -> UnitOfWork:
    unit_of_work = getattr(request.app.state, "unit_of_work", None)
    if not isinstance(unit_of_work, UnitOfWork):
        raise InvariantViolation("the app lifespan sets up app.state.unit_of_work")
    return unit_of_work


@router.post("/risk/labels", summary="Label a movement as fraud or not (simulator ground truth).")
async def create_label(body: LabelCreate, caller: Writer, request: Request) -> LabelResponse:
    mode = caller.mode.value
    async with _unit_of_work(request).begin() as session:
        statement = select(RiskDecision.id).where(
            RiskDecision.tenant_id == caller.tenant_id, RiskDecision.mode == mode
        )
        if body.reference.startswith(f"{DECISION_PREFIX}_"):  # blocked: no movement id
            statement = statement.where(
                RiskDecision.id == parse_id(DECISION_PREFIX, body.reference)
            )
        else:
            statement = statement.where(RiskDecision.reference == body.reference)
        statement = statement.order_by(RiskDecision.created_at.desc()).limit(1)
        decision_id = (await session.execute(statement)).scalar_one_or_none()
        changed = await record_label(
            session,
            tenant_id=caller.tenant_id,
            mode=mode,
            reference=body.reference,
            fraud=body.fraud,
            source=LabelSource.SIMULATOR,
            decision_id=decision_id,
            at_ns=time.time_ns(),
        )
    return LabelResponse(
        reference=body.reference,
        fraud=body.fraud,
        source=LabelSource.SIMULATOR.value,
        decision_id=None if decision_id is None else format_id(DECISION_PREFIX, decision_id),
        changed=changed,
    )

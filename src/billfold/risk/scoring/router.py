"""Operators' API for risk models: list versions and their metrics, train, promote, read
drift alerts. Reading needs ``reports.read``; training and promoting ``risk.models.manage``
(risk analysts). Both acts are audited."""

from __future__ import annotations

import time
from enum import Enum
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from billfold.identity.auth import get_unit_of_work
from billfold.identity.operators.auth import require_permission
from billfold.identity.operators.permissions import Permission
from billfold.identity.operators.types import OperatorPrincipal
from billfold.kit.db import UnitOfWork
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import parse_id
from billfold.kit.pagination import CURSOR_LENGTH_MAX, PAGE_SIZE_MAX
from billfold.kit.settings import Settings
from billfold.risk.scoring import service
from billfold.risk.scoring.config import ScoringConfig
from billfold.risk.scoring.promotions import request_promotion
from billfold.risk.scoring.registry import ModelRegistry
from billfold.risk.scoring.schemas import (
    ModelAlertPage,
    ModelPage,
    ModelResponse,
    TrainRequest,
    TrainResponse,
)
from billfold.risk.scoring.service import MODEL_ID_PREFIX
from billfold.risk.scoring.tasks import train

__all__ = ["REGISTRY_STATE", "router"]

REGISTRY_STATE = "risk_models"
"""`app.state.risk_models`: the process's `ModelRegistry`, told after a training or a
promotion so the change is served at once (other processes see it within the refresh
interval)."""
_TAGS: list[str | Enum] = ["risk"]
router = APIRouter(prefix="/v1/risk/models", tags=_TAGS, responses=problem_responses(401, 403))
Reader = Annotated[OperatorPrincipal, Depends(require_permission(Permission.REPORTS_READ))]
Manager = Annotated[OperatorPrincipal, Depends(require_permission(Permission.RISK_MODELS_MANAGE))]
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
ModeQuery = Annotated[Literal["test", "live"] | None, Query()]
CursorQuery = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]
LimitQuery = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)]


def _actor(principal: OperatorPrincipal) -> service.Actor:
    actor = principal.actor
    return service.Actor(actor_type=actor.actor_type.value, actor_id=actor.actor_id)


def _registry(request: Request) -> ModelRegistry | None:
    registry = getattr(request.app.state, REGISTRY_STATE, None)
    return registry if isinstance(registry, ModelRegistry) else None


def _config(request: Request) -> ScoringConfig:
    registry = _registry(request)
    if registry is not None:
        return registry.config
    settings = getattr(request.app.state, "settings", None)
    return ScoringConfig.from_settings(settings if isinstance(settings, Settings) else Settings())


@router.get(
    "", summary="The tenant's model versions, newest first.", responses=problem_responses(400, 422)
)
async def list_models(
    principal: Reader,
    unit_of_work: Work,
    mode: ModeQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> ModelPage:
    async with unit_of_work.read() as session:
        page = await service.list_versions(
            session, tenant_id=principal.tenant_id, mode=mode, cursor=cursor, limit=limit
        )
        return ModelPage.from_page(page)


@router.get("/alerts", summary="Drift alerts, newest first.", responses=problem_responses(400, 422))
async def list_alerts(
    principal: Reader,
    unit_of_work: Work,
    mode: ModeQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> ModelAlertPage:
    async with unit_of_work.read() as session:
        page = await service.list_alerts(
            session, tenant_id=principal.tenant_id, mode=mode, cursor=cursor, limit=limit
        )
        return ModelAlertPage.from_page(page)


@router.post(
    "/train",
    summary="Train the tenant's models on what arrived since their latest versions.",
    description="Each model that learned anything gets a new version, in shadow. At most"
    " `BILLFOLD_RISK_MODELS_TRAIN_SAMPLES_MAX` samples per model and call.",
    responses=problem_responses(409, 422),
)
async def train_models(
    body: TrainRequest, principal: Manager, unit_of_work: Work, request: Request
) -> TrainResponse:
    results = await train(
        unit_of_work,
        config=_config(request),
        tenant_id=principal.tenant_id,
        mode=body.mode,
        kinds=list(dict.fromkeys(body.kinds)),
        actor=_actor(principal),
        now_ns=time.time_ns(),
        registry=_registry(request),
    )
    return TrainResponse.from_results(results)


@router.get(
    "/{model_id}",
    summary="A model version with its metrics.",
    responses=problem_responses(404, 422),
)
async def get_model(model_id: str, principal: Reader, unit_of_work: Work) -> ModelResponse:
    identifier = parse_id(MODEL_ID_PREFIX, model_id)
    async with unit_of_work.read() as session:
        row = await service.get_version(session, tenant_id=principal.tenant_id, model_id=identifier)
        return ModelResponse.from_model(row)


@router.post(
    "/{model_id}/promote",
    summary="Ask for the version to become active (four eyes): 202 with"
    " `promotion_approval_id`; once a second operator approves it, the active version of its"
    " kind is retired. An active version answers 200 and nothing changes.",
    responses={
        202: {"description": "Waiting for a second operator's approval."},
        **problem_responses(404, 409, 422),
    },
)
async def promote_model(
    model_id: str, principal: Manager, unit_of_work: Work, response: Response
) -> ModelResponse:
    identifier = parse_id(MODEL_ID_PREFIX, model_id)
    async with unit_of_work.begin() as session:
        asked = await request_promotion(
            session, principal=principal, model_id=identifier, now_ns=time.time_ns()
        )
        if asked.approval_id is not None:
            response.status_code = 202
        return ModelResponse.from_model(asked.model)

"""The operators' API models for risk models and their drift alerts."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billfold.identity.operators.approvals import APPROVAL_ID_PREFIX
from billfold.kit.ids import format_id
from billfold.kit.pagination import Page
from billfold.risk.scoring.models import RiskModelAlert, RiskModelVersion
from billfold.risk.scoring.service import ALERT_ID_PREFIX, MODEL_ID_PREFIX
from billfold.risk.scoring.tasks import TrainingResult

__all__ = [
    "ModelAlertPage",
    "ModelAlertResponse",
    "ModelPage",
    "ModelResponse",
    "TrainRequest",
    "TrainResponse",
]

ModeValue = Literal["test", "live"]
KindValue = Literal["supervised", "anomaly"]


class ModelResponse(BaseModel):
    id: str = Field(description="rmv_<32 hex>")
    mode: ModeValue
    name: str
    version: int
    kind: KindValue
    status: Literal["shadow", "active", "retired"]
    trained_on: int = Field(description="Samples (labels or decisions) learned from so far.")
    metrics: dict[str, Any] = Field(
        description="`run`: the training run's prequential evaluation (samples, skipped,"
        " positives, auc, log_loss; or mean_raw_score); `learned_total`; `reference`: the"
        " score distribution drift is measured against."
    )
    created_at_ns: str
    created_by: str | None
    promoted_at_ns: str | None
    promoted_by: str | None
    retired_at_ns: str | None
    promotion_approval_id: str | None = Field(
        description="The four-eyes request of its last asked-for promotion (`apr_…`)."
    )

    @classmethod
    def from_model(cls, row: RiskModelVersion) -> ModelResponse:
        return cls(
            id=format_id(MODEL_ID_PREFIX, row.id),
            mode=row.mode,
            name=row.name,
            version=row.version,
            kind=row.kind,
            status=row.status,
            trained_on=row.trained_on,
            metrics=json.loads(row.metrics),
            created_at_ns=str(row.created_at),
            created_by=row.created_by,
            promoted_at_ns=None if row.promoted_at is None else str(row.promoted_at),
            promoted_by=row.promoted_by,
            retired_at_ns=None if row.retired_at is None else str(row.retired_at),
            promotion_approval_id=None
            if row.promotion_approval_id is None
            else format_id(APPROVAL_ID_PREFIX, row.promotion_approval_id),
        )


class ModelPage(BaseModel):
    items: list[ModelResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[RiskModelVersion]) -> ModelPage:
        return cls(
            items=[ModelResponse.from_model(row) for row in page.items],
            next_cursor=page.next_cursor,
        )


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: ModeValue
    kinds: list[KindValue] = Field(default=["supervised", "anomaly"], min_length=1, max_length=2)


class TrainResponse(BaseModel):
    learned: dict[str, int] = Field(description="Samples learned, per kind.")
    created: list[ModelResponse] = Field(description="The new shadow versions.")

    @classmethod
    def from_results(cls, results: list[TrainingResult]) -> TrainResponse:
        return cls(
            learned={result.kind: result.learned for result in results},
            created=[
                ModelResponse.from_model(result.version)
                for result in results
                if result.version is not None
            ],
        )


class ModelAlertResponse(BaseModel):
    id: str = Field(description="rma_<32 hex>")
    mode: ModeValue
    model_id: str = Field(description="rmv_<32 hex>: the version whose scores drifted.")
    kind: Literal["drift"]
    metric: Literal["psi"]
    value: float
    threshold: float
    window_size: int
    reference_size: int
    created_at_ns: str

    @classmethod
    def from_model(cls, row: RiskModelAlert) -> ModelAlertResponse:
        return cls(
            id=format_id(ALERT_ID_PREFIX, row.id),
            mode=row.mode,
            model_id=format_id(MODEL_ID_PREFIX, row.model_id),
            kind="drift",
            metric="psi",
            value=row.value,
            threshold=row.threshold,
            window_size=row.window_size,
            reference_size=row.reference_size,
            created_at_ns=str(row.created_at),
        )


class ModelAlertPage(BaseModel):
    items: list[ModelAlertResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[RiskModelAlert]) -> ModelAlertPage:
        return cls(
            items=[ModelAlertResponse.from_model(row) for row in page.items],
            next_cursor=page.next_cursor,
        )

"""Decisions of the models domain, in the caller's transaction (never commits): store a
trained version, promote one, read them, record a drift alert (row, outbox event, log)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.events.outbox import emit
from billfold.kit.auth import Mode
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import Page, clamp_page_size, decode_id_cursor, encode_cursor
from billfold.risk.scoring import repository
from billfold.risk.scoring.drift import DriftCheck
from billfold.risk.scoring.errors import (
    ModelNotFound,
    ModelPromotionConflict,
    ModelTrainingConflict,
)
from billfold.risk.scoring.models import RiskModelAlert, RiskModelVersion

__all__ = [
    "ALERT_ID_PREFIX",
    "DRIFT_EVENT_TYPE",
    "MODEL_ID_PREFIX",
    "Actor",
    "DriftedModel",
    "NewVersion",
    "get_version",
    "list_alerts",
    "list_versions",
    "promote",
    "record_drift_alert",
    "store_version",
]

log = structlog.get_logger(__name__)
MODEL_ID_PREFIX = "rmv"
ALERT_ID_PREFIX = "rma"
DRIFT_EVENT_TYPE = "com.billfold.risk.model_drift_detected.v1"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit log names it (``operator``/``opr_…``, or ``system``)."""

    actor_type: str
    actor_id: str | None

    @classmethod
    def system(cls) -> Actor:
        return cls(actor_type="system", actor_id=None)


@dataclass(frozen=True, slots=True)
class NewVersion:
    tenant_id: uuid.UUID
    mode: str
    name: str
    version: int
    kind: str
    state: bytes
    state_digest: str
    trained_on: int
    watermark_at: int
    watermark_id: uuid.UUID | None
    metrics: Mapping[str, object]


async def store_version(
    session: AsyncSession, new: NewVersion, *, actor: Actor, now_ns: int
) -> RiskModelVersion:
    """Insert a trained version as ``shadow`` (audited), retiring the older shadow versions
    of its name. Another run that stored the same version first: `ModelTrainingConflict`."""
    await repository.retire_shadows(
        session, tenant_id=new.tenant_id, mode=new.mode, name=new.name, at_ns=now_ns
    )
    row = RiskModelVersion(
        id=new_id(),
        tenant_id=new.tenant_id,
        mode=new.mode,
        name=new.name,
        version=new.version,
        kind=new.kind,
        status="shadow",
        state=new.state,
        state_digest=new.state_digest,
        trained_on=new.trained_on,
        watermark_at=new.watermark_at,
        watermark_id=new.watermark_id,
        metrics=json.dumps(new.metrics, separators=(",", ":"), allow_nan=False),
        created_at=now_ns,
        created_by=actor.actor_id,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as error:
        raise ModelTrainingConflict(
            f"Version {new.version} of {new.name} was stored by another run; train again."
        ) from error
    await audit.append(
        session,
        tenant_id=new.tenant_id,
        action="risk.model.trained",
        occurred_at=now_ns,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        target=format_id(MODEL_ID_PREFIX, row.id),
        after={
            "name": new.name,
            "version": new.version,
            "kind": new.kind,
            "mode": new.mode,
            "trained_on": new.trained_on,
            "status": "shadow",
        },
    )
    return row


async def get_version(
    session: AsyncSession, *, tenant_id: uuid.UUID, model_id: uuid.UUID
) -> RiskModelVersion:
    row = await repository.get_version(session, tenant_id=tenant_id, model_id=model_id)
    if row is None:
        raise ModelNotFound("No such model version for this tenant.")
    return row


async def promote(
    session: AsyncSession, *, tenant_id: uuid.UUID, model_id: uuid.UUID, actor: Actor, now_ns: int
) -> RiskModelVersion:
    """Make the version active, retiring the active one of its kind (audited). Promoting
    the active version changes nothing; a retired one may be promoted back (a rollback)."""
    row = await repository.get_version(
        session, tenant_id=tenant_id, model_id=model_id, for_update=True
    )
    if row is None:
        raise ModelNotFound("No such model version for this tenant.")
    if row.status == "active":
        return row
    previous = await repository.active_version(
        session, tenant_id=tenant_id, mode=row.mode, kind=row.kind
    )
    await repository.retire_active(
        session, tenant_id=tenant_id, mode=row.mode, kind=row.kind, at_ns=now_ns
    )
    await session.flush()
    before_status = row.status
    row.status = "active"
    row.promoted_at = now_ns
    row.promoted_by = actor.actor_id
    row.retired_at = None
    try:
        await session.flush()
    except IntegrityError as error:  # the unique index: one active version per kind
        raise ModelPromotionConflict(
            "Another version of this kind was promoted at the same time; try again."
        ) from error
    await audit.append(
        session,
        tenant_id=tenant_id,
        action="risk.model.promoted",
        occurred_at=now_ns,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        target=format_id(MODEL_ID_PREFIX, row.id),
        before={"status": before_status},
        after={
            "status": "active",
            "retired": None if previous is None else format_id(MODEL_ID_PREFIX, previous.id),
        },
        detail={"name": row.name, "version": row.version, "kind": row.kind, "mode": row.mode},
    )
    return row


async def list_versions(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[RiskModelVersion]:
    size = clamp_page_size(limit)
    rows = await repository.list_versions(
        session,
        tenant_id=tenant_id,
        mode=mode,
        before_id=None if cursor is None else decode_id_cursor(cursor),
        limit=size + 1,
    )
    return _page(rows, size)


async def list_alerts(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[RiskModelAlert]:
    size = clamp_page_size(limit)
    rows = await repository.list_alerts(
        session,
        tenant_id=tenant_id,
        mode=mode,
        before_id=None if cursor is None else decode_id_cursor(cursor),
        limit=size + 1,
    )
    return _page(rows, size)


_Row = TypeVar("_Row", RiskModelVersion, RiskModelAlert)


def _page(rows: Sequence[_Row], size: int) -> Page[_Row]:
    items = list(rows[:size])
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > size else None
    return Page(items=items, next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class DriftedModel:
    tenant_id: uuid.UUID
    mode: str
    model_id: uuid.UUID
    name: str
    version: int
    kind: str


def record_drift_alert(
    session: AsyncSession, model: DriftedModel, check: DriftCheck, *, threshold: float, now_ns: int
) -> RiskModelAlert:
    """The alert row, its outbox event and a warning in the log, in the caller's session."""
    alert = RiskModelAlert(
        id=new_id(),
        tenant_id=model.tenant_id,
        mode=model.mode,
        model_id=model.model_id,
        kind="drift",
        metric="psi",
        value=check.psi,
        threshold=threshold,
        window_size=check.window_size,
        reference_size=check.reference_size,
        created_at=now_ns,
    )
    session.add(alert)
    model_public_id = format_id(MODEL_ID_PREFIX, model.model_id)
    emit(
        session,
        tenant_id=model.tenant_id,
        mode=Mode(model.mode),
        type=DRIFT_EVENT_TYPE,
        subject=model_public_id,
        aggregate_id=model.model_id,
        data={
            "alert_id": format_id(ALERT_ID_PREFIX, alert.id),
            "model_id": model_public_id,
            "name": model.name,
            "version": model.version,
            "kind": model.kind,
            "metric": "psi",
            "value": round(check.psi, 6),
            "threshold": threshold,
            "window_size": check.window_size,
            "reference_size": check.reference_size,
            "detected_at": now_ns,
        },
        occurred_at_ns=now_ns,
    )
    log.warning(
        "risk.model_drift_detected",
        tenant_id=format_id("ten", model.tenant_id),
        mode=model.mode,
        model_id=model_public_id,
        model=f"{model.name}@{model.version}",
        psi=round(check.psi, 4),
        threshold=threshold,
    )
    return alert

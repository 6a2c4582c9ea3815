"""Every query of the models domain: versions, their training samples, alerts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from billfold.risk.models import RiskDecision, RiskLabel
from billfold.risk.scoring.models import RiskModelAlert, RiskModelVersion

__all__ = [
    "DecisionSample",
    "LabelledSample",
    "VersionStamp",
    "active_version",
    "decisions_after",
    "decisions_by_ids",
    "get_version",
    "labelled_after",
    "latest_version",
    "list_alerts",
    "list_versions",
    "load_versions",
    "retire_active",
    "retire_shadows",
    "scopes_with_decisions",
    "versions_in_use",
]


@dataclass(frozen=True, slots=True)
class LabelledSample:
    label_id: uuid.UUID
    updated_at: int
    fraud: bool
    reference: str
    features: str | None
    """The labelled decision's features (JSON), None when no decision was found."""


@dataclass(frozen=True, slots=True)
class DecisionSample:
    decision_id: uuid.UUID
    created_at: int
    features: str


@dataclass(frozen=True, slots=True)
class VersionStamp:
    """What the cheap version check reads: enough to tell whether anything changed."""

    id: uuid.UUID
    status: str


async def labelled_after(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    after_at: int,
    after_id: uuid.UUID | None,
    limit: int,
) -> list[LabelledSample]:
    """Labels changed after the watermark, oldest first, with their decision's features:
    through `decision_id`, else the latest decision with the label's reference."""
    by_reference = (
        select(RiskDecision.features)
        .where(
            RiskDecision.tenant_id == RiskLabel.tenant_id,
            RiskDecision.mode == RiskLabel.mode,
            RiskDecision.reference == RiskLabel.reference,
        )
        .order_by(RiskDecision.created_at.desc(), RiskDecision.id.desc())
        .limit(1)
        .correlate(RiskLabel)
        .scalar_subquery()
    )
    decision = RiskDecision.__table__.alias("labelled_decision")
    statement = (
        select(
            RiskLabel.id,
            RiskLabel.updated_at,
            RiskLabel.fraud,
            RiskLabel.reference,
            func.coalesce(decision.c.features, by_reference),
        )
        .outerjoin(
            decision,
            and_(
                decision.c.id == RiskLabel.decision_id,
                decision.c.tenant_id == RiskLabel.tenant_id,
                decision.c.mode == RiskLabel.mode,
            ),
        )
        .where(
            RiskLabel.tenant_id == tenant_id,
            RiskLabel.mode == mode,
            _after(RiskLabel.updated_at, RiskLabel.id, after_at, after_id),
        )
        .order_by(RiskLabel.updated_at, RiskLabel.id)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [
        LabelledSample(
            label_id=row[0],
            updated_at=row[1],
            fraud=bool(row[2]),
            reference=row[3],
            features=row[4],
        )
        for row in rows
    ]


def _after(
    time_column: InstrumentedAttribute[int],
    id_column: InstrumentedAttribute[uuid.UUID],
    at: int,
    identifier: uuid.UUID | None,
) -> ColumnElement[bool]:
    """Rows strictly after the watermark (time, then id on a tie)."""
    if identifier is None:
        return time_column > at
    return or_(time_column > at, and_(time_column == at, id_column > identifier))


async def decisions_by_ids(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Features of the tenant's decisions among `ids` (labels keyed by an `rdc_` reference)."""
    if not ids:
        return {}
    statement = select(RiskDecision.id, RiskDecision.features).where(
        RiskDecision.tenant_id == tenant_id, RiskDecision.mode == mode, RiskDecision.id.in_(ids)
    )
    return {row[0]: row[1] for row in (await session.execute(statement)).all()}


async def decisions_after(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    after_at: int,
    after_id: uuid.UUID | None,
    limit: int,
) -> list[DecisionSample]:
    statement = (
        select(RiskDecision.id, RiskDecision.created_at, RiskDecision.features)
        .where(
            RiskDecision.tenant_id == tenant_id,
            RiskDecision.mode == mode,
            _after(RiskDecision.created_at, RiskDecision.id, after_at, after_id),
        )
        .order_by(RiskDecision.created_at, RiskDecision.id)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [DecisionSample(decision_id=row[0], created_at=row[1], features=row[2]) for row in rows]


async def scopes_with_decisions(
    session: AsyncSession, *, since_ns: int, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """(tenant, mode) pairs with a decision at or after `since_ns`: whom to train."""
    statement = (
        select(RiskDecision.tenant_id, RiskDecision.mode)
        .where(RiskDecision.created_at >= since_ns)
        .distinct()
        .order_by(RiskDecision.tenant_id, RiskDecision.mode)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def latest_version(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, name: str
) -> RiskModelVersion | None:
    statement = (
        select(RiskModelVersion)
        .where(
            RiskModelVersion.tenant_id == tenant_id,
            RiskModelVersion.mode == mode,
            RiskModelVersion.name == name,
        )
        .order_by(RiskModelVersion.version.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_version(
    session: AsyncSession, *, tenant_id: uuid.UUID, model_id: uuid.UUID, for_update: bool = False
) -> RiskModelVersion | None:
    statement = select(RiskModelVersion).where(
        RiskModelVersion.tenant_id == tenant_id, RiskModelVersion.id == model_id
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def active_version(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, kind: str
) -> RiskModelVersion | None:
    statement = select(RiskModelVersion).where(
        RiskModelVersion.tenant_id == tenant_id,
        RiskModelVersion.mode == mode,
        RiskModelVersion.kind == kind,
        RiskModelVersion.status == "active",
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def retire_active(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, kind: str, at_ns: int
) -> None:
    """Retire the active version of `kind` (flushed before another becomes active: the
    unique index allows one active version per kind)."""
    await session.execute(
        update(RiskModelVersion)
        .where(
            RiskModelVersion.tenant_id == tenant_id,
            RiskModelVersion.mode == mode,
            RiskModelVersion.kind == kind,
            RiskModelVersion.status == "active",
        )
        .values(status="retired", retired_at=at_ns)
        .execution_options(synchronize_session="fetch")
    )


async def retire_shadows(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, name: str, at_ns: int
) -> None:
    """Retire the shadow versions of `name`: a newer version supersedes them (it learned
    from everything they did, and more)."""
    await session.execute(
        update(RiskModelVersion)
        .where(
            RiskModelVersion.tenant_id == tenant_id,
            RiskModelVersion.mode == mode,
            RiskModelVersion.name == name,
            RiskModelVersion.status == "shadow",
        )
        .values(status="retired", retired_at=at_ns)
        .execution_options(synchronize_session="fetch")
    )


async def versions_in_use(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, limit: int
) -> list[VersionStamp]:
    """Active and shadow versions' ids and statuses, without their states (cheap)."""
    statement = (
        select(RiskModelVersion.id, RiskModelVersion.status)
        .where(
            RiskModelVersion.tenant_id == tenant_id,
            RiskModelVersion.mode == mode,
            RiskModelVersion.status.in_(("active", "shadow")),
        )
        .order_by(RiskModelVersion.id)
        .limit(limit)
    )
    return [
        VersionStamp(id=row[0], status=row[1]) for row in (await session.execute(statement)).all()
    ]


async def load_versions(
    session: AsyncSession, *, ids: Sequence[uuid.UUID]
) -> Sequence[RiskModelVersion]:
    if not ids:
        return []
    statement = select(RiskModelVersion).where(RiskModelVersion.id.in_(ids))
    return (await session.execute(statement)).scalars().all()


async def list_versions(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> Sequence[RiskModelVersion]:
    """Newest first (ids are time-ordered)."""
    statement = select(RiskModelVersion).where(RiskModelVersion.tenant_id == tenant_id)
    if mode is not None:
        statement = statement.where(RiskModelVersion.mode == mode)
    if before_id is not None:
        statement = statement.where(RiskModelVersion.id < before_id)
    statement = statement.order_by(RiskModelVersion.id.desc()).limit(limit)
    return (await session.execute(statement)).scalars().all()


async def list_alerts(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> Sequence[RiskModelAlert]:
    """Newest first."""
    statement = select(RiskModelAlert).where(RiskModelAlert.tenant_id == tenant_id)
    if mode is not None:
        statement = statement.where(RiskModelAlert.mode == mode)
    if before_id is not None:
        statement = statement.where(RiskModelAlert.id < before_id)
    statement = statement.order_by(RiskModelAlert.id.desc()).limit(limit)
    return (await session.execute(statement)).scalars().all()

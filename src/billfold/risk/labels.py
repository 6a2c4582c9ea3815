"""Labels: whether a movement turned out to be fraud. Cases (an analyst's decision) and
lost chargebacks write them; models learn from them (with the labelled decision's features).

A label is keyed by (tenant, mode, reference, source): writing it again with the same
verdict changes nothing; a different verdict from the same source replaces the old one.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import new_id
from billfold.kit.upsert import insert_if_absent
from billfold.risk.models import RiskLabel

__all__ = ["LabelSource", "labels_since", "record_label"]


class LabelSource(enum.StrEnum):
    ANALYST = "analyst"
    """A risk analyst's case decision (reject = fraud, approve = legitimate) or label."""
    CHARGEBACK_LOST = "chargeback_lost"
    """A dispute the merchant lost: fraud."""
    SIMULATOR = "simulator"
    """The ground truth of a simulated workload (`billfold simulate`)."""


async def record_label(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    reference: str,
    fraud: bool,
    source: LabelSource,
    decision_id: uuid.UUID | None,
    at_ns: int,
) -> bool:
    """Store the label; whether it changed anything (False: the same label was there)."""
    inserted = await insert_if_absent(
        session,
        RiskLabel,
        {
            "id": new_id(),
            "tenant_id": tenant_id,
            "mode": mode,
            "reference": reference,
            "decision_id": decision_id,
            "fraud": fraud,
            "source": source.value,
            "created_at": at_ns,
            "updated_at": at_ns,
        },
    )
    if inserted:
        return True
    result = await session.execute(
        update(RiskLabel)
        .where(
            RiskLabel.tenant_id == tenant_id,
            RiskLabel.mode == mode,
            RiskLabel.reference == reference,
            RiskLabel.source == source.value,
            RiskLabel.fraud.is_not(fraud),
        )
        .values(
            fraud=fraud,
            decision_id=decision_id if decision_id is not None else RiskLabel.decision_id,
            updated_at=at_ns,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) > 0


async def labels_since(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, since_ns: int, limit: int
) -> Sequence[RiskLabel]:
    """The tenant's labels changed at or after `since_ns`, oldest change first."""
    statement = (
        select(RiskLabel)
        .where(
            RiskLabel.tenant_id == tenant_id,
            RiskLabel.mode == mode,
            RiskLabel.updated_at >= since_ns,
        )
        .order_by(RiskLabel.updated_at, RiskLabel.id)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()

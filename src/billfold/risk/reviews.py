"""What payment flows call around a decision: open a review case for a held movement, and
read the automated responses in force on a user.

Both run in the movement's own transaction. The case queue, its API and its resolution
live in ``billfold.risk.cases``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import new_id
from billfold.kit.upsert import insert_if_absent
from billfold.risk.cases.service import close_unheld
from billfold.risk.models import RiskCase, RiskResponse
from billfold.risk.types import Decision, Movement, Response

__all__ = ["active_responses", "case_state", "close_case", "open_case"]

_IN_FORCE = ("active", "reversing")


async def open_case(
    session: AsyncSession,
    *,
    decision: Decision,
    movement: Movement,
    reference: str,
    hold_expires_at_ns: int,
    at_ns: int,
) -> uuid.UUID:
    """Open the review case of a held movement (one per movement: opening it again returns
    the case already open)."""
    case_id = new_id()
    inserted = await insert_if_absent(
        session,
        RiskCase,
        {
            "id": case_id,
            "tenant_id": movement.tenant_id,
            "mode": movement.mode,
            "decision_id": decision.id,
            "reference": reference,
            "kind": movement.kind.value,
            "user_id": movement.user_id,
            "amount": movement.amount,
            "currency": movement.currency,
            "state": "open",
            "hold_expires_at": hold_expires_at_ns,
            "opened_at": at_ns,
            "resolved_at": None,
            "resolved_by": None,
        },
    )
    if inserted:
        return case_id
    existing = await session.execute(
        select(RiskCase.id).where(
            RiskCase.tenant_id == movement.tenant_id,
            RiskCase.mode == movement.mode,
            RiskCase.reference == reference,
        )
    )
    return existing.scalar_one()


async def active_responses(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, user_id: uuid.UUID
) -> frozenset[Response]:
    """The automated responses in force on the user (a pending reversal still holds)."""
    rows = await session.execute(
        select(RiskResponse.kind).where(
            RiskResponse.tenant_id == tenant_id,
            RiskResponse.mode == mode,
            RiskResponse.user_id == user_id,
            RiskResponse.state.in_(_IN_FORCE),
        )
    )
    return frozenset(Response(kind) for kind in rows.scalars())


async def close_case(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    reference: str,
    state: str,
    at_ns: int,
) -> bool:
    """Close the open case of `reference` as ``expired`` without an operator, because its
    hold could not be placed (nothing is held: its resolution is written settled at once),
    with the ``risk.case.expired`` audit entry; whether it was open. A case whose hold
    lapsed expires through ``risk.cases.settlement.expire_due`` instead (its hold is
    voided there)."""
    if state != "expired":
        raise ValueError("a case closes without an operator only as expired")
    return await close_unheld(
        session, tenant_id=tenant_id, mode=mode, reference=reference, now_ns=at_ns
    )


async def case_state(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, reference: str
) -> str | None:
    """The state of the case of `reference` (open, approved, rejected, expired), or None."""
    result = await session.execute(
        select(RiskCase.state).where(
            RiskCase.tenant_id == tenant_id,
            RiskCase.mode == mode,
            RiskCase.reference == reference,
        )
    )
    return result.scalar_one_or_none()

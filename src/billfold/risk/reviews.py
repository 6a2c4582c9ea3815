"""What payment flows call around a decision: open a review case for a held movement, and
read the automated responses in force on a user.

Both run in the movement's own transaction. The case queue, its API and its resolution
live in ``billfold.risk.cases``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import new_id
from billfold.kit.upsert import insert_if_absent
from billfold.risk.models import RiskCase, RiskResponse
from billfold.risk.types import Decision, Movement, Response

__all__ = [
    "DueCase",
    "active_responses",
    "case_state",
    "close_case",
    "due_cases",
    "open_case",
]

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


@dataclass(frozen=True, slots=True)
class DueCase:
    """An open case past its hold's expiry."""

    tenant_id: uuid.UUID
    mode: str
    reference: str


async def due_cases(session: AsyncSession, *, now_ns: int, limit: int) -> list[DueCase]:
    """Open cases whose hold expired at or before `now_ns`, soonest first."""
    rows = await session.execute(
        select(RiskCase.tenant_id, RiskCase.mode, RiskCase.reference)
        .where(RiskCase.state == "open", RiskCase.hold_expires_at <= now_ns)
        .order_by(RiskCase.hold_expires_at)
        .limit(limit)
    )
    return [DueCase(tenant_id=row[0], mode=row[1], reference=row[2]) for row in rows]


async def close_case(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    reference: str,
    state: str,
    at_ns: int,
) -> bool:
    """Close the open case of `reference` as `state` (``expired``: its hold lapsed, or
    could not be placed) without an operator; whether it was open."""
    if state not in ("approved", "rejected", "expired"):
        raise ValueError("a case closes as approved, rejected or expired")
    result = await session.execute(
        update(RiskCase)
        .where(
            RiskCase.tenant_id == tenant_id,
            RiskCase.mode == mode,
            RiskCase.reference == reference,
            RiskCase.state == "open",
        )
        .values(state=state, resolved_at=at_ns)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) > 0


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

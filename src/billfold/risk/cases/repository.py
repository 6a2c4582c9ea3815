"""Every query of the review queue and the automated responses, scoped by tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from billfold.kit.errors import invariant
from billfold.risk.cases.models import RiskCaseNote, RiskCaseResolution, RiskResponseEnforcement
from billfold.risk.models import RiskCase, RiskDecision, RiskResponse

__all__ = ["CaseFilter", "CaseRepository", "ResponseRepository"]

_SWEEP_MAX = 1_000


def _changed(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class CaseFilter:
    """The queue's filters; None matches anything."""

    def __init__(
        self,
        *,
        state: str,
        kind: str | None = None,
        user_id: uuid.UUID | None = None,
        mode: str | None = None,
    ) -> None:
        self.state, self.kind, self.user_id, self.mode = state, kind, user_id, mode


class CaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, *, tenant_id: uuid.UUID, case_id: uuid.UUID) -> RiskCase | None:
        statement = select(RiskCase).where(RiskCase.id == case_id, RiskCase.tenant_id == tenant_id)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def by_reference(
        self, *, tenant_id: uuid.UUID, mode: str, reference: str
    ) -> RiskCase | None:
        """The case of a held movement (one per movement)."""
        statement = select(RiskCase).where(
            RiskCase.tenant_id == tenant_id, RiskCase.mode == mode, RiskCase.reference == reference
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def resolution(self, case_id: uuid.UUID) -> RiskCaseResolution | None:
        return await self._session.get(RiskCaseResolution, case_id)

    async def resolutions(self, case_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Each case's resolution state, for those that have one."""
        if not case_ids:
            return {}
        statement = select(RiskCaseResolution.case_id, RiskCaseResolution.state).where(
            RiskCaseResolution.case_id.in_(list(case_ids))
        )
        return {row.case_id: row.state for row in await self._session.execute(statement)}

    async def decision(
        self, *, tenant_id: uuid.UUID, decision_id: uuid.UUID
    ) -> RiskDecision | None:
        statement = select(RiskDecision).where(
            RiskDecision.id == decision_id, RiskDecision.tenant_id == tenant_id
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def queue(
        self,
        *,
        tenant_id: uuid.UUID,
        where: CaseFilter,
        after: tuple[int, uuid.UUID] | None,
        limit: int,
    ) -> list[RiskCase]:
        """Cases in the order they were opened (oldest first), after the cursor."""
        statement = self._filtered(select(RiskCase), tenant_id=tenant_id, where=where)
        if after is not None:
            opened_at, case_id = after
            statement = statement.where(
                or_(
                    RiskCase.opened_at > opened_at,
                    and_(RiskCase.opened_at == opened_at, RiskCase.id > case_id),
                )
            )
        statement = statement.order_by(RiskCase.opened_at, RiskCase.id).limit(limit)
        return list((await self._session.execute(statement)).scalars())

    @staticmethod
    def _filtered(
        statement: Select[Any], *, tenant_id: uuid.UUID, where: CaseFilter
    ) -> Select[Any]:
        statement = statement.where(RiskCase.tenant_id == tenant_id)
        if where.mode is not None:
            statement = statement.where(RiskCase.mode == where.mode)
        if where.kind is not None:
            statement = statement.where(RiskCase.kind == where.kind)
        if where.user_id is not None:
            statement = statement.where(RiskCase.user_id == where.user_id)
        pending = select(RiskCaseResolution.case_id).where(
            RiskCaseResolution.case_id == RiskCase.id, RiskCaseResolution.state == "pending"
        )
        if where.state == "open":
            return statement.where(RiskCase.state == "open")
        if where.state == "resolving":
            return statement.where(RiskCase.state != "open", pending.exists())
        return statement.where(RiskCase.state == where.state, ~pending.exists())

    async def claim(
        self,
        *,
        tenant_id: uuid.UUID,
        case_id: uuid.UUID,
        to_state: str,
        resolved_by: uuid.UUID | None,
        now_ns: int,
        held: bool = False,
    ) -> bool:
        """``open → to_state``, conditionally: of two concurrent decisions, one wins. With
        `held`, only while the case's hold has not lapsed at `now_ns`."""
        invariant(to_state in ("approved", "rejected", "expired"), "a decided state")
        statement = update(RiskCase).where(
            RiskCase.id == case_id, RiskCase.tenant_id == tenant_id, RiskCase.state == "open"
        )
        if held:
            statement = statement.where(RiskCase.hold_expires_at > now_ns)
        result = await self._session.execute(
            statement.values(
                state=to_state, resolved_by=resolved_by, resolved_at=now_ns
            ).execution_options(synchronize_session=False)
        )
        return _changed(result) == 1

    async def add_resolution(self, resolution: RiskCaseResolution) -> None:
        self._session.add(resolution)
        await self._session.flush()

    async def settle(self, *, case_id: uuid.UUID, now_ns: int) -> bool:
        result = await self._session.execute(
            update(RiskCaseResolution)
            .where(RiskCaseResolution.case_id == case_id, RiskCaseResolution.state == "pending")
            .values(state="settled", settled_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _changed(result) == 1

    async def record_failure(self, *, case_id: uuid.UUID, error: str) -> None:
        await self._session.execute(
            update(RiskCaseResolution)
            .where(RiskCaseResolution.case_id == case_id, RiskCaseResolution.state == "pending")
            .values(attempts=RiskCaseResolution.attempts + 1, last_error=error)
            .execution_options(synchronize_session=False)
        )

    async def unsettled(
        self, *, requested_before_ns: int, attempts_max: int, limit: int
    ) -> list[uuid.UUID]:
        """Pending resolutions decided before the cutoff, oldest first, still retried."""
        invariant(1 <= limit <= _SWEEP_MAX, "a sweep is bounded")
        statement = (
            select(RiskCaseResolution.case_id)
            .where(
                RiskCaseResolution.state == "pending",
                RiskCaseResolution.requested_at < requested_before_ns,
                RiskCaseResolution.attempts < attempts_max,
            )
            .order_by(RiskCaseResolution.requested_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def due_for_expiry(self, *, now_ns: int, limit: int) -> list[RiskCase]:
        invariant(1 <= limit <= _SWEEP_MAX, "a sweep is bounded")
        statement = (
            select(RiskCase)
            .where(RiskCase.state == "open", RiskCase.hold_expires_at <= now_ns)
            .order_by(RiskCase.hold_expires_at, RiskCase.id)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def notes(self, *, case_id: uuid.UUID, limit: int) -> list[RiskCaseNote]:
        statement = (
            select(RiskCaseNote)
            .where(RiskCaseNote.case_id == case_id)
            .order_by(RiskCaseNote.created_at, RiskCaseNote.id)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def count_notes(self, *, case_id: uuid.UUID) -> int:
        statement = select(func.count()).where(RiskCaseNote.case_id == case_id)
        return int((await self._session.execute(statement)).scalar_one())

    async def add_note(self, note: RiskCaseNote) -> None:
        self._session.add(note)
        await self._session.flush()


class ResponseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(
        self, *, tenant_id: uuid.UUID, response_id: uuid.UUID, for_update: bool = False
    ) -> RiskResponse | None:
        """The tenant's response; with ``for_update``, as committed now and locked until the
        transaction ends (PostgreSQL: FOR NO KEY UPDATE; SQLite's writer lock already
        serializes writers)."""
        statement = select(RiskResponse).where(
            RiskResponse.id == response_id, RiskResponse.tenant_id == tenant_id
        )
        if for_update:
            statement = statement.with_for_update(key_share=True).execution_options(
                populate_existing=True
            )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def add(self, response: RiskResponse) -> None:
        self._session.add(response)
        await self._session.flush()

    async def active_kind_exists(
        self, *, tenant_id: uuid.UUID, mode: str, user_id: uuid.UUID, kind: str
    ) -> bool:
        statement = select(RiskResponse.id).where(
            RiskResponse.tenant_id == tenant_id,
            RiskResponse.mode == mode,
            RiskResponse.user_id == user_id,
            RiskResponse.kind == kind,
            RiskResponse.state == "active",
        )
        return (await self._session.execute(statement.limit(1))).first() is not None

    async def in_force_of_kind(
        self, *, tenant_id: uuid.UUID, mode: str, user_id: uuid.UUID, kind: str, limit: int
    ) -> list[RiskResponse]:
        statement = (
            select(RiskResponse)
            .where(
                RiskResponse.tenant_id == tenant_id,
                RiskResponse.mode == mode,
                RiskResponse.user_id == user_id,
                RiskResponse.kind == kind,
                RiskResponse.state.in_(("active", "reversing")),
            )
            .order_by(RiskResponse.id)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def page(
        self,
        *,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID | None,
        state: str | None,
        before_id: uuid.UUID | None,
        limit: int,
    ) -> list[RiskResponse]:
        """Newest first (ids are time-ordered), before the cursor."""
        statement = select(RiskResponse).where(RiskResponse.tenant_id == tenant_id)
        if user_id is not None:
            statement = statement.where(RiskResponse.user_id == user_id)
        if state is not None:
            statement = statement.where(RiskResponse.state == state)
        if before_id is not None:
            statement = statement.where(RiskResponse.id < before_id)
        statement = statement.order_by(RiskResponse.id.desc()).limit(limit)
        return list((await self._session.execute(statement)).scalars())

    async def transition(
        self,
        *,
        response_id: uuid.UUID,
        from_states: Sequence[str],
        to_state: str,
        reversed_by: uuid.UUID | None = None,
        now_ns: int | None = None,
    ) -> bool:
        values: dict[str, object] = {"state": to_state}
        if to_state == "reversed":
            values |= {"reversed_by": reversed_by, "reversed_at": now_ns}
        result = await self._session.execute(
            update(RiskResponse)
            .where(RiskResponse.id == response_id, RiskResponse.state.in_(list(from_states)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return _changed(result) == 1

    async def set_detail(self, *, response_id: uuid.UUID, detail: str) -> None:
        await self._session.execute(
            update(RiskResponse)
            .where(RiskResponse.id == response_id)
            .values(detail=detail)
            .execution_options(synchronize_session=False)
        )

    async def add_enforcement(self, enforcement: RiskResponseEnforcement) -> None:
        self._session.add(enforcement)
        await self._session.flush()

    async def enforcement(self, response_id: uuid.UUID) -> RiskResponseEnforcement | None:
        return await self._session.get(RiskResponseEnforcement, response_id)

    async def finish_enforcement(
        self, *, response_id: uuid.UUID, to_state: str, now_ns: int
    ) -> bool:
        result = await self._session.execute(
            update(RiskResponseEnforcement)
            .where(
                RiskResponseEnforcement.response_id == response_id,
                RiskResponseEnforcement.state == "pending",
            )
            .values(state=to_state, done_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _changed(result) == 1

    async def enforcement_failed(self, *, response_id: uuid.UUID) -> None:
        await self._session.execute(
            update(RiskResponseEnforcement)
            .where(
                RiskResponseEnforcement.response_id == response_id,
                RiskResponseEnforcement.state == "pending",
            )
            .values(attempts=RiskResponseEnforcement.attempts + 1)
            .execution_options(synchronize_session=False)
        )

    async def unenforced(
        self, *, created_before_ns: int, attempts_max: int, limit: int
    ) -> list[uuid.UUID]:
        invariant(1 <= limit <= _SWEEP_MAX, "a sweep is bounded")
        statement = (
            select(RiskResponseEnforcement.response_id)
            .where(
                RiskResponseEnforcement.state == "pending",
                RiskResponseEnforcement.created_at < created_before_ns,
                RiskResponseEnforcement.attempts < attempts_max,
            )
            .order_by(RiskResponseEnforcement.created_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

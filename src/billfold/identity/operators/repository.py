"""Every query operators make. Repositories add and flush; the unit of work commits.

Every read a tenant's caller can reach takes the tenant id, so no route can forget it. State
changes that two requests could race on are conditional UPDATEs (``… WHERE status =
'pending'``): the database decides which one wins, and the loser sees zero rows changed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping
from typing import Any, cast

from sqlalchemy import CursorResult, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.models import Tenant
from billfold.identity.operators.models import (
    ApprovalRequest,
    ApprovedChange,
    Operator,
    OperatorSession,
)
from billfold.kit.errors import invariant

__all__ = [
    "ApprovalRepository",
    "ApprovedChangeRepository",
    "OperatorRepository",
    "OperatorSessionRepository",
]

_LISTED_MAX = 1_001
"""Most rows one listing query returns: a page of 1,000 and the one that says 'more'."""
_PENDING_LOCK_NAMESPACE = b"billfold.identity.pending-approvals:"


def pending_lock_key(tenant_id: uuid.UUID) -> int:
    """The PostgreSQL advisory-lock key (a signed 64-bit integer) of a tenant's new
    approval requests."""
    digest = hashlib.blake2b(_PENDING_LOCK_NAMESPACE + tenant_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _changed_rows(result: object) -> int:
    return cast(CursorResult[Any], result).rowcount


class OperatorRepository:
    """A tenant's operators."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, operator: Operator) -> None:
        self._session.add(operator)
        await self._session.flush()

    async def get_for_tenant(
        self, *, tenant_id: uuid.UUID, operator_id: uuid.UUID
    ) -> Operator | None:
        statement = select(Operator).where(
            Operator.id == operator_id, Operator.tenant_id == tenant_id
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_for_update(
        self, *, tenant_id: uuid.UUID, operator_id: uuid.UUID
    ) -> Operator | None:
        """The operator as committed now, its row locked until this transaction ends
        (PostgreSQL; SQLite's write lock already serializes writers), so a concurrent change
        of its roles or status waits for this transaction, or this one reads its outcome."""
        statement = (
            select(Operator)
            .where(Operator.id == operator_id, Operator.tenant_id == tenant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_by_email(self, *, tenant_id: uuid.UUID, email: str) -> Operator | None:
        statement = select(Operator).where(Operator.tenant_id == tenant_id, Operator.email == email)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_for_tenant(
        self, *, tenant_id: uuid.UUID, after_id: uuid.UUID | None, limit: int
    ) -> list[Operator]:
        """Up to ``limit`` operators in id (creation) order, after ``after_id`` when given."""
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(Operator).where(Operator.tenant_id == tenant_id).order_by(Operator.id)
        ).limit(limit)
        if after_id is not None:
            statement = statement.where(Operator.id > after_id)
        return list((await self._session.execute(statement)).scalars())

    async def count_for_tenant(self, tenant_id: uuid.UUID) -> int:
        statement = select(func.count()).where(Operator.tenant_id == tenant_id)
        return int((await self._session.execute(statement)).scalar_one())

    async def roles_of_active(self, *, tenant_id: uuid.UUID, limit: int) -> list[str]:
        """The roles column of each active operator of the tenant (at most ``limit``), their
        rows locked until this transaction ends, in id order.

        For a change that must leave an active administrator: two such changes at once
        (two admins disabling each other) would each count the other as the one left. Locked,
        the second waits for the first to commit, and PostgreSQL then reads the rows as the
        first left them. (SQLite's write lock already serializes the two.)"""
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(Operator.roles)
            .where(Operator.tenant_id == tenant_id, Operator.status == "active")
            .order_by(Operator.id)
            .limit(limit)
            .with_for_update()
        )
        return list((await self._session.execute(statement)).scalars())

    async def record_failed_login(
        self, *, operator_id: uuid.UUID, failures_max: int, locked_until_ns: int
    ) -> None:
        """Count one more failure, and lock sign-in once there are ``failures_max`` in a row.

        One UPDATE, so concurrent failures each count (no lost increments).
        """
        reaches_max = Operator.failed_login_count + 1 >= failures_max
        statement = (
            update(Operator)
            .where(Operator.id == operator_id)
            .values(
                failed_login_count=case((reaches_max, 0), else_=Operator.failed_login_count + 1),
                locked_until=case((reaches_max, locked_until_ns), else_=Operator.locked_until),
            )
            .execution_options(synchronize_session=False)
        )
        await self._session.execute(statement)

    async def record_successful_login(self, operator_id: uuid.UUID) -> None:
        statement = (
            update(Operator)
            .where(Operator.id == operator_id)
            .values(failed_login_count=0, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        await self._session.execute(statement)


class OperatorSessionRepository:
    """Operators' sessions."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, operator_session: OperatorSession) -> None:
        self._session.add(operator_session)
        await self._session.flush()

    async def get_with_operator(
        self, session_id: uuid.UUID
    ) -> tuple[OperatorSession, Operator, str] | None:
        """The session, its operator and its tenant's status, in one query."""
        statement = (
            select(OperatorSession, Operator, Tenant.status)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .join(Tenant, Tenant.id == Operator.tenant_id)
            .where(OperatorSession.id == session_id)
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    async def live_ids(self, *, operator_id: uuid.UUID, now_ns: int, limit: int) -> list[uuid.UUID]:
        """The operator's unexpired, unrevoked sessions, newest first."""
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(OperatorSession.id)
            .where(
                OperatorSession.operator_id == operator_id,
                OperatorSession.expires_at > now_ns,
                OperatorSession.revoked_at.is_(None),
            )
            .order_by(OperatorSession.id.desc())
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def revoke(
        self,
        *,
        operator_id: uuid.UUID,
        now_ns: int,
        session_ids: Collection[uuid.UUID] | None = None,
        except_id: uuid.UUID | None = None,
    ) -> int:
        """Revoke the operator's live sessions (only ``session_ids`` when given)."""
        statement = update(OperatorSession).where(
            OperatorSession.operator_id == operator_id,
            OperatorSession.revoked_at.is_(None),
            OperatorSession.expires_at > now_ns,
        )
        if session_ids is not None:
            statement = statement.where(OperatorSession.id.in_(list(session_ids)))
        if except_id is not None:
            statement = statement.where(OperatorSession.id != except_id)
        result = await self._session.execute(
            statement.values(revoked_at=now_ns).execution_options(synchronize_session=False)
        )
        return _changed_rows(result)


class ApprovalRepository:
    """Approval requests, and their transitions as conditional UPDATEs."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, approval: ApprovalRequest) -> None:
        self._session.add(approval)
        await self._session.flush()

    async def get_for_tenant(
        self, *, tenant_id: uuid.UUID, approval_id: uuid.UUID
    ) -> ApprovalRequest | None:
        statement = select(ApprovalRequest).where(
            ApprovalRequest.id == approval_id, ApprovalRequest.tenant_id == tenant_id
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def reload(self, approval_id: uuid.UUID) -> ApprovalRequest | None:
        """The row as the database has it now (after a conditional UPDATE changed it)."""
        statement = (
            select(ApprovalRequest)
            .where(ApprovalRequest.id == approval_id)
            .execution_options(populate_existing=True)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_for_tenant(
        self,
        *,
        tenant_id: uuid.UUID,
        action_types: Collection[str],
        status: str | None,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> list[ApprovalRequest]:
        """Up to ``limit`` requests of the given action types, newest first."""
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(ApprovalRequest)
            .where(
                ApprovalRequest.tenant_id == tenant_id,
                ApprovalRequest.action_type.in_(list(action_types)),
            )
            .order_by(ApprovalRequest.id.desc())
            .limit(limit)
        )
        if status is not None:
            statement = statement.where(ApprovalRequest.status == status)
        if after_id is not None:
            statement = statement.where(ApprovalRequest.id < after_id)
        return list((await self._session.execute(statement)).scalars())

    async def lock_pending(self, tenant_id: uuid.UUID) -> None:
        """Serialize the tenant's new requests until this transaction ends, so the pending
        requests counted against a cap stay counted until the new one commits (two
        concurrent requests would otherwise both see room for one). PostgreSQL: a
        transaction-scoped advisory lock; SQLite: nothing to do, the unit of work's ``BEGIN
        IMMEDIATE`` already holds the database's only write lock."""
        if self._session.get_bind().dialect.name != "postgresql":
            return
        await self._session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": pending_lock_key(tenant_id)}
        )

    async def count_pending(
        self, *, tenant_id: uuid.UUID, now_ns: int, requested_by: uuid.UUID | None = None
    ) -> int:
        """The tenant's pending, unexpired requests (only ``requested_by``'s when given)."""
        statement = select(func.count()).where(
            ApprovalRequest.tenant_id == tenant_id,
            ApprovalRequest.status == "pending",
            ApprovalRequest.expires_at > now_ns,
        )
        if requested_by is not None:
            statement = statement.where(ApprovalRequest.requested_by == requested_by)
        return int((await self._session.execute(statement)).scalar_one())

    async def claim_decision(
        self,
        *,
        tenant_id: uuid.UUID,
        approval_id: uuid.UUID,
        decider_id: uuid.UUID,
        action_types: Collection[str],
        to_status: str,
        note: str | None,
        now_ns: int,
    ) -> bool:
        """Move a pending request to ``to_status`` if, and only if, every rule holds.

        The rules live in the WHERE clause, so checking and deciding are one statement: two
        concurrent decisions cannot both see 'pending', and a transaction that starts with
        this write takes the write lock first (on SQLite, no read-then-write upgrade).
        """
        invariant(to_status in ("approved", "refused"), "a decision approves or refuses")
        statement = (
            update(ApprovalRequest)
            .where(
                ApprovalRequest.id == approval_id,
                ApprovalRequest.tenant_id == tenant_id,
                ApprovalRequest.status == "pending",
                ApprovalRequest.expires_at > now_ns,
                ApprovalRequest.requested_by != decider_id,
                ApprovalRequest.action_type.in_(list(action_types)),
            )
            .values(status=to_status, decided_by=decider_id, decided_at=now_ns, decision_note=note)
            .execution_options(synchronize_session=False)
        )
        changed = _changed_rows(await self._session.execute(statement))
        invariant(changed <= 1, "a decision changes at most one request")
        return changed == 1

    async def expire(self, *, approval_ids: Collection[uuid.UUID], now_ns: int) -> int:
        """Mark these requests expired if they are still pending and past their time."""
        statement = (
            update(ApprovalRequest)
            .where(
                ApprovalRequest.id.in_(list(approval_ids)),
                ApprovalRequest.status == "pending",
                ApprovalRequest.expires_at <= now_ns,
            )
            .values(status="expired", decided_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement))

    async def due_for_expiry(self, *, now_ns: int, limit: int) -> list[uuid.UUID]:
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(ApprovalRequest.id)
            .where(ApprovalRequest.status == "pending", ApprovalRequest.expires_at <= now_ns)
            .order_by(ApprovalRequest.expires_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def approved_unfinished(
        self, *, decided_before_ns: int, limit: int
    ) -> list[ApprovalRequest]:
        """Approved requests whose execution has not been recorded: interrupted ones."""
        invariant(1 <= limit <= _LISTED_MAX, "listing is bounded")
        statement = (
            select(ApprovalRequest)
            .where(
                ApprovalRequest.status == "approved",
                ApprovalRequest.decided_at < decided_before_ns,
            )
            .order_by(ApprovalRequest.decided_at)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def finish(
        self, *, approval_id: uuid.UUID, to_status: str, result: str, now_ns: int
    ) -> bool:
        """Record an approved request's execution outcome, once."""
        invariant(to_status in ("executed", "failed"), "execution ends executed or failed")
        values: Mapping[str, object] = {
            "status": to_status,
            "result": result,
            "executed_at": now_ns,
        }
        statement = (
            update(ApprovalRequest)
            .where(ApprovalRequest.id == approval_id, ApprovalRequest.status == "approved")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement)) == 1


class ApprovedChangeRepository:
    """Approved changes waiting for their owning domain."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, change: ApprovedChange) -> None:
        self._session.add(change)
        await self._session.flush()

    async def get(self, approval_id: uuid.UUID) -> ApprovedChange | None:
        return await self._session.get(ApprovedChange, approval_id)

"""Every query identity makes. Repositories add and flush; the unit of work commits."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from billfold.identity.models import ApiKey, Tenant
from billfold.identity.types import Mode

__all__ = ["ApiKeyRepository", "TenantRepository"]


class TenantRepository:
    """Tenants by id."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, tenant: Tenant) -> None:
        self._session.add(tenant)
        await self._session.flush()

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self._session.get(Tenant, tenant_id)

    async def get_for_update(self, tenant_id: uuid.UUID) -> Tenant | None:
        """The tenant, its row locked until this transaction ends, for a check of a cap on
        what it holds (API keys, operators): a second creation waits for the first to
        commit, then counts its row, so concurrent creations cannot overshoot. FOR NO KEY
        UPDATE on PostgreSQL, so rows referencing the tenant are still inserted meanwhile
        (SQLite's BEGIN IMMEDIATE already serializes writers)."""
        statement = (
            select(Tenant)
            .where(Tenant.id == tenant_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()


class ApiKeyRepository:
    """API keys; every read a caller can reach is filtered by tenant and mode."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, api_key: ApiKey) -> None:
        self._session.add(api_key)
        await self._session.flush()

    async def get_with_tenant(self, api_key_id: uuid.UUID) -> ApiKey | None:
        """The key and its tenant in one query: what authentication needs."""
        statement = (
            select(ApiKey)
            .options(joinedload(ApiKey.tenant, innerjoin=True))
            .where(ApiKey.id == api_key_id)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_any_tenant(self, api_key_id: uuid.UUID) -> ApiKey | None:
        """A key whatever its tenant: only for the operator's command line, never the API."""
        return await self._session.get(ApiKey, api_key_id)

    async def get_for_tenant(
        self, *, tenant_id: uuid.UUID, mode: Mode, api_key_id: uuid.UUID
    ) -> ApiKey | None:
        statement = select(ApiKey).where(
            ApiKey.id == api_key_id, ApiKey.tenant_id == tenant_id, ApiKey.mode == mode.value
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_for_tenant(
        self, *, tenant_id: uuid.UUID, mode: Mode, after_id: uuid.UUID | None, limit: int
    ) -> list[ApiKey]:
        """Up to ``limit`` keys in id (creation) order, after ``after_id`` when given."""
        statement = (
            select(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.mode == mode.value)
            .order_by(ApiKey.id)
            .limit(limit)
        )
        if after_id is not None:
            statement = statement.where(ApiKey.id > after_id)
        return list((await self._session.execute(statement)).scalars())

    async def count_unrevoked(self, tenant_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def record_use(self, *, api_key_id: uuid.UUID, now_ns: int, stale_before_ns: int) -> None:
        """Set last_used_at unless another request already did since ``stale_before_ns``.

        The condition lives in the UPDATE so concurrent requests write it at most once.
        """
        statement = (
            update(ApiKey)
            .where(
                ApiKey.id == api_key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before_ns),
            )
            .values(last_used_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        await self._session.execute(statement)

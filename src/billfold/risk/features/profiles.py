"""Risk profiles: what risk knows of an end user beyond identity (their country of
residence, compared with the IP's country by `ip_country_mismatch`). Set by the tenant
(`users:admin`), audited."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.types import Mode
from billfold.identity.users.repository import UserRepository
from billfold.kit.ids import format_id
from billfold.risk.features import repository
from billfold.risk.features.errors import RiskUserNotFound
from billfold.risk.features.models import RiskProfile

__all__ = ["read_profile", "write_profile"]


async def _check_user(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: Mode, user_id: uuid.UUID
) -> None:
    user = await UserRepository(session).get_for_tenant(
        tenant_id=tenant_id, mode=mode, user_id=user_id
    )
    if user is None:
        raise RiskUserNotFound("No such user.")


async def read_profile(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: Mode, user_id: uuid.UUID
) -> RiskProfile | None:
    """The user's profile, None if never set; `user_not_found` for another tenant's user."""
    await _check_user(session, tenant_id=tenant_id, mode=mode, user_id=user_id)
    return await repository.get_profile(
        session, tenant_id=tenant_id, mode=mode.value, user_id=user_id
    )


async def write_profile(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    residence_country: str | None,
    actor_id: str,
    now_ns: int,
) -> RiskProfile:
    """Set the user's profile (a PUT: the whole of it), with an audit entry."""
    await _check_user(session, tenant_id=tenant_id, mode=mode, user_id=user_id)
    before = await repository.get_profile(
        session, tenant_id=tenant_id, mode=mode.value, user_id=user_id
    )
    previous = None if before is None else before.residence_country
    profile = await repository.set_profile(
        session,
        tenant_id=tenant_id,
        mode=mode.value,
        user_id=user_id,
        residence_country=residence_country,
        now_ns=now_ns,
    )
    await audit.append(
        session,
        tenant_id=tenant_id,
        action="risk.profile_set",
        occurred_at=now_ns,
        actor_type="api_key",
        actor_id=actor_id,
        target=format_id("usr", user_id),
        before={"residence_country": previous},
        after={"residence_country": residence_country},
    )
    return profile

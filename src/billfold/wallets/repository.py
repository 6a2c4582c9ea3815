"""Every query of wallets: wallets, merchants, holder tiers, tenants' tier limits, limit
overrides and risk reductions, scoped by
tenant and mode, and the per-holder lock that serializes spending-limit checks."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.upsert import insert_if_absent
from billfold.wallets.models import (
    HolderTier,
    LimitOverride,
    LimitReduction,
    Merchant,
    TierLimit,
    Wallet,
)

__all__ = ["WalletRepository"]

WALLETS_PER_OWNER_MAX = 200
_HOLDER_LOCK_NAMESPACE = b"billfold.wallets.spending-limits:"


def holder_lock_key(owner_id: uuid.UUID) -> int:
    """The PostgreSQL advisory-lock key (a signed 64-bit integer) of one holder's spending."""
    digest = hashlib.blake2b(_HOLDER_LOCK_NAMESPACE + owner_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class WalletRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_wallet_if_absent(self, wallet: Wallet) -> None:
        await insert_if_absent(
            self._session,
            Wallet,
            {
                "id": wallet.id,
                "tenant_id": wallet.tenant_id,
                "mode": wallet.mode,
                "owner_kind": wallet.owner_kind,
                "owner_id": wallet.owner_id,
                "currency": wallet.currency,
                "created_at": wallet.created_at,
            },
        )

    async def owner_wallets(
        self, *, tenant_id: uuid.UUID, mode: str, owner_kind: str, owner_id: uuid.UUID
    ) -> list[Wallet]:
        statement = (
            select(Wallet)
            .where(
                Wallet.tenant_id == tenant_id,
                Wallet.mode == mode,
                Wallet.owner_kind == owner_kind,
                Wallet.owner_id == owner_id,
            )
            .order_by(Wallet.currency)
            .limit(WALLETS_PER_OWNER_MAX)
        )
        return list((await self._session.execute(statement)).scalars())

    async def add_merchant(self, merchant: Merchant) -> None:
        self._session.add(merchant)
        await self._session.flush()

    async def get_merchant(
        self, *, tenant_id: uuid.UUID, mode: str, merchant_id: uuid.UUID
    ) -> Merchant | None:
        statement = select(Merchant).where(
            Merchant.id == merchant_id, Merchant.tenant_id == tenant_id, Merchant.mode == mode
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_merchants(
        self, *, tenant_id: uuid.UUID, mode: str, after_id: uuid.UUID | None, limit: int
    ) -> list[Merchant]:
        statement = select(Merchant).where(Merchant.tenant_id == tenant_id, Merchant.mode == mode)
        if after_id is not None:
            statement = statement.where(Merchant.id > after_id)
        statement = statement.order_by(Merchant.id).limit(limit)
        return list((await self._session.execute(statement)).scalars())

    async def tier_of(self, user_id: uuid.UUID) -> int | None:
        row = await self._session.get(HolderTier, user_id)
        return None if row is None else row.tier

    async def set_tier(
        self, *, tenant_id: uuid.UUID, user_id: uuid.UUID, tier: int, now_ns: int
    ) -> None:
        """Set the user's tier; the last writer wins. Inserted if absent, else updated: a
        read then an insert would let two first settings both insert, and on PostgreSQL
        the second fail on the key instead of waiting for the first and updating."""
        values = {"user_id": user_id, "tenant_id": tenant_id, "tier": tier, "updated_at": now_ns}
        if await insert_if_absent(self._session, HolderTier, values):
            return
        await self._session.execute(
            update(HolderTier)
            .where(HolderTier.user_id == user_id)
            .values(tier=tier, updated_at=now_ns)
            .execution_options(synchronize_session=False)
        )

    async def lock_holder(self, owner_id: uuid.UUID) -> None:
        """Serialize the holder's spending until this transaction ends, so a limit check
        and the payment it lets through commit before the next check reads the usage.
        PostgreSQL: a transaction-scoped advisory lock (held until commit or rollback);
        SQLite: nothing to do, the unit of work's ``BEGIN IMMEDIATE`` already holds the
        database's only write lock."""
        if self._session.get_bind().dialect.name != "postgresql":
            return
        await self._session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": holder_lock_key(owner_id)}
        )

    async def add_override_if_absent(self, override: LimitOverride) -> bool:
        """Record an approved override; False when this approval's is already recorded."""
        return await insert_if_absent(
            self._session,
            LimitOverride,
            {
                "approval_id": override.approval_id,
                "tenant_id": override.tenant_id,
                "mode": override.mode,
                "owner_kind": override.owner_kind,
                "owner_id": override.owner_id,
                "currency": override.currency,
                "limit_window": override.limit_window,
                "amount": override.amount,
                "requested_by": override.requested_by,
                "approved_by": override.approved_by,
                "approved_at": override.approved_at,
            },
        )

    async def get_override(self, approval_id: uuid.UUID) -> LimitOverride | None:
        return await self._session.get(LimitOverride, approval_id)

    async def overrides_in_force(
        self, *, owner_kind: str, owner_id: uuid.UUID, currency: str
    ) -> dict[str, LimitOverride]:
        """The latest approved override per window of the holder's limits in `currency`."""
        latest = (
            select(
                LimitOverride.limit_window.label("limit_window"),
                func.max(LimitOverride.approved_at).label("approved_at"),
            )
            .where(
                LimitOverride.owner_kind == owner_kind,
                LimitOverride.owner_id == owner_id,
                LimitOverride.currency == currency,
            )
            .group_by(LimitOverride.limit_window)
            .subquery()
        )
        statement = (
            select(LimitOverride)
            .join(
                latest,
                (LimitOverride.limit_window == latest.c.limit_window)
                & (LimitOverride.approved_at == latest.c.approved_at),
            )
            .where(
                LimitOverride.owner_kind == owner_kind,
                LimitOverride.owner_id == owner_id,
                LimitOverride.currency == currency,
            )
            .order_by(LimitOverride.approval_id)
        )
        rows = (await self._session.execute(statement)).scalars()
        return {row.limit_window: row for row in rows}  # a tie: the greater id wins

    async def add_tier_limit_if_absent(self, change: TierLimit) -> bool:
        """Record an approved tier-limits change; False when this approval's is already
        recorded."""
        return await insert_if_absent(
            self._session,
            TierLimit,
            {
                "approval_id": change.approval_id,
                "tenant_id": change.tenant_id,
                "mode": change.mode,
                "tier": change.tier,
                "currency": change.currency,
                "per_transaction": change.per_transaction,
                "daily": change.daily,
                "monthly": change.monthly,
                "requested_by": change.requested_by,
                "approved_by": change.approved_by,
                "approved_at": change.approved_at,
            },
        )

    async def get_tier_limit(self, approval_id: uuid.UUID) -> TierLimit | None:
        return await self._session.get(TierLimit, approval_id)

    async def tier_limit_in_force(
        self, *, tenant_id: uuid.UUID, mode: str, tier: int, currency: str
    ) -> TierLimit | None:
        """The latest approved change of the tenant's figures for (mode, tier, currency),
        a removal included; None when it never changed them. One index range, newest
        first: this is on every payment's limit check."""
        statement = (
            select(TierLimit)
            .where(
                TierLimit.tenant_id == tenant_id,
                TierLimit.mode == mode,
                TierLimit.tier == tier,
                TierLimit.currency == currency,
            )
            .order_by(TierLimit.approved_at.desc(), TierLimit.approval_id.desc())
            .limit(1)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def tier_limits_in_force(
        self, *, tenant_id: uuid.UUID, mode: str, currency: str | None, limit: int
    ) -> list[TierLimit]:
        """The latest approved change per (tier, currency) of the tenant's figures in
        `mode` (removals included), in `currency` only when given; at most `limit`, by
        currency then tier."""
        scope = [TierLimit.tenant_id == tenant_id, TierLimit.mode == mode]
        if currency is not None:
            scope.append(TierLimit.currency == currency)
        latest = (
            select(
                TierLimit.tier.label("tier"),
                TierLimit.currency.label("currency"),
                func.max(TierLimit.approved_at).label("approved_at"),
            )
            .where(*scope)
            .group_by(TierLimit.tier, TierLimit.currency)
            .subquery()
        )
        statement = (
            select(TierLimit)
            .join(
                latest,
                and_(
                    TierLimit.tier == latest.c.tier,
                    TierLimit.currency == latest.c.currency,
                    TierLimit.approved_at == latest.c.approved_at,
                ),
            )
            .where(*scope)
            .order_by(TierLimit.currency, TierLimit.tier, TierLimit.approval_id)
            .limit(limit)
        )
        rows = (await self._session.execute(statement)).scalars()
        latest_rows = {(row.tier, row.currency): row for row in rows}  # a tie: greater id wins
        return list(latest_rows.values())

    async def add_reduction_if_absent(self, reduction: LimitReduction) -> bool:
        """Record a risk reduction; False when one with this id is already recorded."""
        return await insert_if_absent(
            self._session,
            LimitReduction,
            {
                "id": reduction.id,
                "tenant_id": reduction.tenant_id,
                "mode": reduction.mode,
                "user_id": reduction.user_id,
                "limit_bps": reduction.limit_bps,
                "created_at": reduction.created_at,
                "lifted_at": None,
            },
        )

    async def lift_reduction(self, *, reduction_id: uuid.UUID, now_ns: int) -> bool:
        """Lift a reduction in force; False when it is absent or already lifted."""
        result = await self._session.execute(
            update(LimitReduction)
            .where(LimitReduction.id == reduction_id, LimitReduction.lifted_at.is_(None))
            .values(lifted_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0) > 0

    async def get_reduction(self, reduction_id: uuid.UUID) -> LimitReduction | None:
        return await self._session.get(LimitReduction, reduction_id)

    async def reduction_in_force(self, *, user_id: uuid.UUID) -> int | None:
        """The strongest reduction in force on the holder (fewest basis points), if any."""
        statement = select(func.min(LimitReduction.limit_bps)).where(
            LimitReduction.user_id == user_id, LimitReduction.lifted_at.is_(None)
        )
        value = (await self._session.execute(statement)).scalar_one_or_none()
        return None if value is None else int(value)

"""Every query of wallets: wallets, merchants and holder tiers, scoped by tenant and mode."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.upsert import insert_if_absent
from billfold.wallets.models import HolderTier, Merchant, Wallet

__all__ = ["WalletRepository"]

WALLETS_PER_OWNER_MAX = 200


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
        row = await self._session.get(HolderTier, user_id)
        if row is None:
            self._session.add(
                HolderTier(user_id=user_id, tenant_id=tenant_id, tier=tier, updated_at=now_ns)
            )
        else:
            row.tier, row.updated_at = tier, now_ns
        await self._session.flush()

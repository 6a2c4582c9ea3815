"""Every query on privacy's tables. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.privacy.models import Consent, PiiValue, Token

__all__ = ["PrivacyRepository"]


class PrivacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def pii_values(self, *, user_id: uuid.UUID) -> Sequence[PiiValue]:
        statement = select(PiiValue).where(PiiValue.user_id == user_id).order_by(PiiValue.field)
        return (await self._session.scalars(statement)).all()

    async def add(self, row: PiiValue | Token | Consent) -> None:
        self._session.add(row)
        await self._session.flush()

    async def pii_value(self, *, user_id: uuid.UUID, field: str) -> PiiValue | None:
        statement = select(PiiValue).where(PiiValue.user_id == user_id, PiiValue.field == field)
        return (await self._session.scalars(statement)).one_or_none()

    async def add_if_absent(self, row: PiiValue | Token) -> bool:
        """Insert `row` in a savepoint (the transaction stays usable); False when a unique
        key is taken: the user's field stored first by a concurrent transaction (the caller
        updates that row instead), or the token or the value's fingerprint."""
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError:
            return False
        return True

    async def users_by_blind_index(
        self, *, tenant_id: uuid.UUID, mode: str, field: str, blind_index: bytes, limit: int
    ) -> list[uuid.UUID]:
        statement = (
            select(PiiValue.user_id)
            .where(
                PiiValue.tenant_id == tenant_id,
                PiiValue.mode == mode,
                PiiValue.field == field,
                PiiValue.blind_index == blind_index,
            )
            .order_by(PiiValue.user_id)
            .limit(limit)
        )
        return list((await self._session.scalars(statement)).all())

    async def delete_pii_values(self, *, user_id: uuid.UUID) -> int:
        result = await self._session.execute(delete(PiiValue).where(PiiValue.user_id == user_id))
        return int(getattr(result, "rowcount", 0) or 0)

    async def token_by_value(
        self, *, tenant_id: uuid.UUID, mode: str, kind: str, fingerprint: bytes
    ) -> Token | None:
        statement = select(Token).where(
            Token.tenant_id == tenant_id,
            Token.mode == mode,
            Token.kind == kind,
            Token.fingerprint == fingerprint,
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def token(
        self, *, tenant_id: uuid.UUID, mode: str, kind: str, token: str
    ) -> Token | None:
        statement = select(Token).where(
            Token.tenant_id == tenant_id,
            Token.mode == mode,
            Token.kind == kind,
            Token.token == token,
        )
        return (await self._session.scalars(statement)).one_or_none()

    async def consents(self, *, user_id: uuid.UUID) -> Sequence[Consent]:
        statement = (
            select(Consent)
            .where(Consent.user_id == user_id)
            .order_by(Consent.granted_at, Consent.id)
        )
        return (await self._session.scalars(statement)).all()

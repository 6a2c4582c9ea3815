"""Every query on `idempotency_keys`. It flushes nothing itself and never commits: the
store's unit of work does.

Written for SQLite and PostgreSQL alike: the first use of a key is an
`INSERT … ON CONFLICT DO NOTHING … RETURNING`, and every later change is a
compare-and-swap on `attempt_id`, so two requests racing for one key cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.http.idempotency_models import (
    STATUS_COMPLETED,
    STATUS_IN_PROGRESS,
    IdempotencyKey,
)

__all__ = ["Claim", "IdempotencyRepository"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What an execution writes when it takes a key: itself as the holder, its lease."""

    scope: str
    key: str
    fingerprint: str
    attempt_id: str
    now_ns: int
    locked_until: int
    expires_at: int


def _changed_rows(result: object) -> int:
    # DML through the session returns a CursorResult; its static type is the wider Result.
    return cast(CursorResult[Any], result).rowcount


class IdempotencyRepository:
    """Rows of `idempotency_keys`, addressed by (scope, key)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert_if_absent(self, claim: Claim) -> bool:
        """Create the key held by `claim`; False when the key already exists."""
        dialect = self._session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(IdempotencyKey)
            .values(
                scope=claim.scope,
                key=claim.key,
                fingerprint=claim.fingerprint,
                status=STATUS_IN_PROGRESS,
                attempt_id=claim.attempt_id,
                locked_until=claim.locked_until,
                created_at=claim.now_ns,
                expires_at=claim.expires_at,
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(IdempotencyKey.key)
        )
        result = await self._session.execute(statement)
        return result.first() is not None

    async def get(self, *, scope: str, key: str) -> IdempotencyKey | None:
        statement = select(IdempotencyKey).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def take_over(self, claim: Claim, *, previous_attempt_id: str, renew: bool) -> bool:
        """Give the key to `claim` if `previous_attempt_id` still holds it; `renew` starts a
        new lifetime (the old one expired) instead of keeping created_at and expires_at."""
        values: dict[str, object] = {
            "fingerprint": claim.fingerprint,
            "status": STATUS_IN_PROGRESS,
            "attempt_id": claim.attempt_id,
            "locked_until": claim.locked_until,
            "response_status": None,
            "response_headers": None,
            "response_body": None,
        }
        if renew:
            values |= {"created_at": claim.now_ns, "expires_at": claim.expires_at}
        statement = (
            update(IdempotencyKey)
            .where(*self._held_by(claim.scope, claim.key, previous_attempt_id))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement)) == 1

    async def complete(
        self,
        *,
        scope: str,
        key: str,
        attempt_id: str,
        status: int,
        headers: list[list[str]],
        body: bytes,
    ) -> bool:
        """Store the response of the execution `attempt_id`; False if it no longer holds
        the key (its lease ran out and another execution took over)."""
        statement = (
            update(IdempotencyKey)
            .where(
                *self._held_by(scope, key, attempt_id),
                IdempotencyKey.status == STATUS_IN_PROGRESS,
            )
            .values(
                status=STATUS_COMPLETED,
                response_status=status,
                response_headers=headers,
                response_body=body,
            )
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement)) == 1

    async def delete_in_progress(self, *, scope: str, key: str, attempt_id: str) -> bool:
        """Drop the key while `attempt_id` still holds it and has not completed."""
        statement = (
            delete(IdempotencyKey)
            .where(
                *self._held_by(scope, key, attempt_id),
                IdempotencyKey.status == STATUS_IN_PROGRESS,
            )
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement)) == 1

    async def delete_expired(self, *, now_ns: int, created_before_ns: int, limit: int) -> int:
        """Delete up to `limit` keys past expires_at and created before `created_before_ns`."""
        victims = (
            select(IdempotencyKey.scope, IdempotencyKey.key)
            .where(
                IdempotencyKey.expires_at <= now_ns,
                IdempotencyKey.created_at <= created_before_ns,
            )
            .limit(limit)
        )
        statement = (
            delete(IdempotencyKey)
            .where(tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(victims))
            .execution_options(synchronize_session=False)
        )
        return _changed_rows(await self._session.execute(statement))

    @staticmethod
    def _held_by(scope: str, key: str, attempt_id: str) -> tuple[Any, ...]:
        return (
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
            IdempotencyKey.attempt_id == attempt_id,
        )

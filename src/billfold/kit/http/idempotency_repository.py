"""Every query on `idempotency_keys`. It flushes nothing itself and never commits: the
store's unit of work does.

Written for SQLite and PostgreSQL alike: the first use of a key is an
`INSERT … ON CONFLICT DO NOTHING … RETURNING`, and every later change is a
compare-and-swap on `attempt_id`, so two requests racing for one key cannot both win.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    bindparam,
    delete,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.http.idempotency_models import (
    STATUS_COMPLETED,
    STATUS_IN_PROGRESS,
    IdempotencyKey,
)

__all__ = ["Claim", "Completion", "IdempotencyRepository"]


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


@dataclass(frozen=True, slots=True, eq=False)
class Completion:
    """The response an execution keeps for its key. Compared by identity: two executions
    may complete one key with equal responses, and only one of them holds it."""

    scope: str
    key: str
    attempt_id: str
    status: int
    headers: list[list[str]]
    body: bytes


def _claim_row(claim: Claim) -> dict[str, object]:
    return {
        "scope": claim.scope,
        "key": claim.key,
        "fingerprint": claim.fingerprint,
        "status": STATUS_IN_PROGRESS,
        "attempt_id": claim.attempt_id,
        "locked_until": claim.locked_until,
        "created_at": claim.now_ns,
        "expires_at": claim.expires_at,
    }


# Every completion of a batch in one statement: arrays unnested into rows, joined on the
# key and the execution still holding it.
_COMPLETE_MANY_POSTGRESQL = text(
    f"""
    UPDATE idempotency_keys AS k
       SET status = '{STATUS_COMPLETED}', response_status = v.status,
           response_headers = v.headers::json, response_body = v.body
      FROM unnest(CAST(:scopes AS TEXT[]), CAST(:keys AS TEXT[]), CAST(:attempt_ids AS TEXT[]),
                  CAST(:statuses AS SMALLINT[]), CAST(:headers AS TEXT[]),
                  CAST(:bodies AS BYTEA[]))
           AS v(scope, key, attempt_id, status, headers, body)
     WHERE k.scope = v.scope AND k.key = v.key AND k.attempt_id = v.attempt_id
       AND k.status = '{STATUS_IN_PROGRESS}'
    RETURNING k.scope, k.key, k.attempt_id
    """
).bindparams(
    bindparam("scopes", type_=ARRAY(String)),
    bindparam("keys", type_=ARRAY(String)),
    bindparam("attempt_ids", type_=ARRAY(String)),
    bindparam("statuses", type_=ARRAY(SmallInteger)),
    bindparam("headers", type_=ARRAY(String)),
    bindparam("bodies", type_=ARRAY(LargeBinary)),
)


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

    async def insert_many_if_absent(self, claims: Sequence[Claim]) -> set[tuple[str, str]]:
        """Create every key in `claims` (one statement); the (scope, key) pairs it created.
        The claims' keys must be distinct: which of two equal ones won would be unknown."""
        if not claims:
            return set()
        dialect = self._session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # One cached single-row statement, executed for many rows: SQLAlchemy batches it
        # into multi-row VALUES itself ("insertmanyvalues"), without compiling it afresh
        # for each batch size as a literal multi-row VALUES would be.
        table = cast(Table, IdempotencyKey.__table__)
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(table.c.scope, table.c.key)
        )
        result = await self._session.execute(statement, [_claim_row(claim) for claim in claims])
        return {(row[0], row[1]) for row in result}

    async def complete_many(self, completions: Sequence[Completion]) -> set[Completion]:
        """`complete` for each of `completions`, in one statement on PostgreSQL; those whose
        execution still held its key, which is now completed with their response."""
        if not completions:
            return set()
        if self._session.get_bind().dialect.name == "postgresql":
            result = await self._session.execute(
                _COMPLETE_MANY_POSTGRESQL,
                {
                    "scopes": [c.scope for c in completions],
                    "keys": [c.key for c in completions],
                    "attempt_ids": [c.attempt_id for c in completions],
                    "statuses": [c.status for c in completions],
                    "headers": [json.dumps(c.headers) for c in completions],
                    "bodies": [c.body for c in completions],
                },
            )
            won = {(row[0], row[1], row[2]) for row in result}
            return {c for c in completions if (c.scope, c.key, c.attempt_id) in won}
        return await self._complete_each(completions)

    async def _complete_each(self, completions: Sequence[Completion]) -> set[Completion]:
        # SQLite runs in-process: one statement per key costs no round trip.
        kept: set[Completion] = set()
        for c in completions:
            if await self.complete(
                scope=c.scope,
                key=c.key,
                attempt_id=c.attempt_id,
                status=c.status,
                headers=c.headers,
                body=c.body,
            ):
                kept.add(c)
        return kept

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

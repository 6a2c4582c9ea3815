"""Every query of risk features: the database counters, risk profiles, and what identity
and wallets know of a user (read-only, by id: no ORM relationship crosses a boundary)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import SecurityEvent, SecurityEventType
from billfold.identity.users.models import EndUser
from billfold.kit.driver import DriverStatement
from billfold.kit.errors import invariant
from billfold.risk.features.models import AMOUNT_SUM_MAX, RiskCounter, RiskProfile
from billfold.wallets.models import HolderTier

__all__ = [
    "LOGIN_FAILURE_EVENTS",
    "MFA_FAILURE_EVENTS",
    "PURGE_BATCH_MAX",
    "CounterRow",
    "SecurityCounts",
    "UserFacts",
    "add_counters",
    "get_profile",
    "purge_expired_counters",
    "read_counters",
    "security_counts",
    "set_profile",
    "user_facts",
]

PURGE_BATCH_MAX = 10_000
LOGIN_FAILURE_EVENTS = (SecurityEventType.LOGIN_FAILED.value,)
MFA_FAILURE_EVENTS = (SecurityEventType.MFA_FAILED.value, SecurityEventType.STEP_UP_FAILED.value)


@dataclass(frozen=True, slots=True)
class CounterRow:
    """What one decision adds to one stored row (of the tenant's mode)."""

    key: str
    width_s: int
    bucket: int
    count: int
    amount: int
    amount_squares: float
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class SummedRow:
    key: str
    width_s: int
    count: int
    amount: int
    amount_squares: float


@functools.lru_cache(maxsize=64)
def _read_statement(velocity_count: int, kept_count: int, widths: tuple[int, ...]) -> Any:
    """The read for so many keys, built once per shape (a decision's reads share a few).

    One SELECT per key and window, glued by UNION ALL: each is a range seek on the whole
    primary key (tenant, mode, key, width, bucket) that reads only the window's buckets,
    whatever the planner's statistics say (with `key IN …` PostgreSQL, unsure of a new
    tenant's rows, may scan the tenant instead; with the windows OR-ed in one SELECT
    SQLite reads every stored bucket of the key, expired ones included)."""
    table = RiskCounter
    sums = (
        table.key,
        table.width_s,
        func.sum(table.count),
        func.sum(table.amount),
        func.sum(table.amount_squares),
    )
    scope = (table.tenant_id == bindparam("tenant_id"), table.mode == bindparam("mode"))
    parts = [
        select(*sums)
        .where(
            *scope,
            table.key == bindparam(f"key_{index}"),
            table.width_s == width_s,
            table.bucket.between(bindparam(f"first_{window}"), bindparam(f"last_{window}")),
        )
        .group_by(table.key, table.width_s)
        for index in range(velocity_count)
        for window, width_s in enumerate(widths)
    ]
    parts += [
        select(*sums)
        .where(*scope, table.key == bindparam(f"key_{index}"), table.width_s == 0)
        .group_by(table.key, table.width_s)
        for index in range(velocity_count, velocity_count + kept_count)
    ]
    return DriverStatement(union_all(*parts) if len(parts) > 1 else parts[0])


async def read_counters(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    velocity_keys: Sequence[str],
    kept_keys: Sequence[str],
    windows: Sequence[tuple[int, int, int]],
) -> list[SummedRow]:
    """One query: per velocity key and window width (`width_s`, first bucket, last bucket),
    the sums over the window's buckets; and the rows of `kept_keys` (seen members and
    histories, width 0)."""
    if not velocity_keys and not kept_keys:
        return []
    widths = tuple(width_s for width_s, _first, _last in windows)
    statement = _read_statement(len(velocity_keys), len(kept_keys), widths)
    parameters: dict[str, Any] = {"tenant_id": tenant_id, "mode": mode}
    for index, (_width_s, first, last) in enumerate(windows):
        parameters[f"first_{index}"], parameters[f"last_{index}"] = first, last
    for index, key in enumerate([*velocity_keys, *kept_keys]):
        parameters[f"key_{index}"] = key
    rows = await statement.fetch(session, parameters)
    return [
        SummedRow(
            key=key,
            width_s=int(width_s),
            count=int(count or 0),
            amount=int(amount or 0),
            amount_squares=float(squares or 0.0),
        )
        for key, width_s, count, amount, squares in rows
    ]


@functools.lru_cache(maxsize=4)
def _add_statement(dialect_name: str) -> Any:
    """The upsert adding one row to what is stored, built once per dialect and executed
    with every row's parameters (executemany: SQLAlchemy renders the rows into batched
    VALUES from one cached compilation; a `.values([...])` of the rows would be compiled
    afresh on every decision)."""
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    table: Any = RiskCounter.__table__
    statement = dialect.insert(table)
    # The sum stops at AMOUNT_SUM_MAX, computed so that it never overflows on the way
    # (an added row is at most KEYS_PER_CALL_MAX capped amounts, well under it).
    least = func.least if dialect_name == "postgresql" else func.min
    room = literal_column(str(AMOUNT_SUM_MAX), BigInteger) - statement.excluded.amount
    return DriverStatement(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "mode", "key", "width_s", "bucket"],
            set_={
                "count": table.c.count + statement.excluded.count,
                "amount": least(table.c.amount, room) + statement.excluded.amount,
                "amount_squares": table.c.amount_squares + statement.excluded.amount_squares,
            },
        )
    )


async def add_counters(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, rows: Sequence[CounterRow]
) -> None:
    """One upsert adding every row to what is stored (rows have distinct keys)."""
    if not rows:
        return
    values = [
        {
            "tenant_id": tenant_id,
            "mode": mode,
            "key": row.key,
            "width_s": row.width_s,
            "bucket": row.bucket,
            "count": row.count,
            "amount": row.amount,
            "amount_squares": row.amount_squares,
            "expires_at": row.expires_at,
        }
        for row in rows
    ]
    await _add_statement(session.get_bind().dialect.name).execute_many(session, values)


async def purge_expired_counters(session: AsyncSession, *, now_ns: int, limit: int) -> int:
    """Delete up to `limit` velocity rows no window reaches any more; how many."""
    invariant(1 <= limit <= PURGE_BATCH_MAX, "a purge is bounded")
    columns = (
        RiskCounter.tenant_id,
        RiskCounter.mode,
        RiskCounter.key,
        RiskCounter.width_s,
        RiskCounter.bucket,
    )
    expired = select(*columns).where(RiskCounter.expires_at < now_ns).limit(limit)
    result: Any = await session.execute(delete(RiskCounter).where(tuple_(*columns).in_(expired)))
    return int(result.rowcount or 0)


# --- risk profiles ------------------------------------------------------------------------


async def get_profile(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, user_id: uuid.UUID
) -> RiskProfile | None:
    return await session.get(RiskProfile, (tenant_id, mode, user_id))


async def set_profile(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    user_id: uuid.UUID,
    residence_country: str | None,
    now_ns: int,
) -> RiskProfile:
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RiskProfile).values(
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        residence_country=residence_country,
        updated_at=now_ns,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "mode", "user_id"],
        set_={"residence_country": residence_country, "updated_at": now_ns},
    )
    await session.execute(statement)
    profile = await session.get(RiskProfile, (tenant_id, mode, user_id), populate_existing=True)
    invariant(profile is not None, "the profile was just written")
    assert profile is not None
    return profile


# --- what identity and wallets know ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserFacts:
    """A user's slow-changing facts (cached by the feature computer)."""

    exists: bool
    created_at: int | None
    residence_country: str | None
    kyc_tier: int | None
    """None when wallets has no row (the holder is at the default tier)."""


@dataclass(frozen=True, slots=True)
class SecurityCounts:
    failed_logins: int
    mfa_failures: int


def _security_counts_statement() -> Any:
    """Failed logins and MFA failures of one user since `since_ns`: one range scan of
    `ix_identity_security_events_tenant_subject_occurred`. Built once with bound
    parameters (building it per decision cost about 1.5 ms of Python)."""
    events = SecurityEvent
    # OR-ed equalities, not IN: an IN list is expanded at execution, and these statements
    # are compiled once to the driver's SQL (`DriverStatement`).
    is_login = or_(*(events.event_type == name for name in LOGIN_FAILURE_EVENTS))
    return select(
        func.coalesce(func.sum(case((is_login, 1), else_=0)), 0).label("logins"),
        func.count().label("total"),
    ).where(
        events.subject_id == bindparam("subject_id"),
        events.occurred_at >= bindparam("since_ns"),
        events.tenant_id == bindparam("tenant_id"),
        or_(*(events.event_type == name for name in LOGIN_FAILURE_EVENTS + MFA_FAILURE_EVENTS)),
    )


def _user_facts_statement() -> Any:
    """The user's facts beside their security counts: one row, built once."""
    counts = _security_counts_statement().subquery()
    user_id: Any = bindparam("user_id")
    tenant_id: Any = bindparam("tenant_id")
    mode: Any = bindparam("mode")
    created_at = (
        select(EndUser.created_at)
        .where(EndUser.id == user_id, EndUser.tenant_id == tenant_id, EndUser.mode == mode)
        .scalar_subquery()
    )
    residence = (
        select(RiskProfile.residence_country)
        .where(
            RiskProfile.tenant_id == tenant_id,
            RiskProfile.mode == mode,
            RiskProfile.user_id == user_id,
        )
        .scalar_subquery()
    )
    tier = (
        select(HolderTier.tier)
        .where(HolderTier.user_id == user_id, HolderTier.tenant_id == tenant_id)
        .scalar_subquery()
    )
    return select(literal(1), created_at, residence, tier, *counts.c).select_from(counts)


_SECURITY_COUNTS = DriverStatement(_security_counts_statement())
_USER_FACTS = DriverStatement(_user_facts_statement())


async def security_counts(
    session: AsyncSession, *, tenant_id: uuid.UUID, subject_id: str, since_ns: int
) -> SecurityCounts:
    parameters = {"subject_id": subject_id, "since_ns": since_ns, "tenant_id": tenant_id}
    ((logins, total),) = await _SECURITY_COUNTS.fetch(session, parameters)
    return SecurityCounts(failed_logins=int(logins), mfa_failures=int(total) - int(logins))


async def user_facts(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    user_id: uuid.UUID,
    subject_id: str,
    since_ns: int,
) -> tuple[UserFacts, SecurityCounts]:
    """The user's facts and their recent security counts, in one query."""
    parameters = {
        "user_id": user_id,
        "tenant_id": tenant_id,
        "mode": mode,
        "subject_id": subject_id,
        "since_ns": since_ns,
    }
    ((_one, created, residence_country, kyc_tier, logins, total),) = await _USER_FACTS.fetch(
        session, parameters
    )
    facts = UserFacts(
        exists=created is not None,
        created_at=None if created is None else int(created),
        residence_country=residence_country,
        kyc_tier=None if kyc_tier is None else int(kyc_tier),
    )
    return facts, SecurityCounts(failed_logins=int(logins), mfa_failures=int(total) - int(logins))

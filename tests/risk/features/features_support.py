"""Helpers for risk feature tests: a feature computer over each counter backend (memory,
real Redis with a key prefix of its own, the test's database), end users and security
events written as identity writes them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import SecurityEventType
from billfold.identity.users.events import record_user_event
from billfold.identity.users.models import EndUser
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id
from billfold.risk.features.counters import (
    CounterStore,
    DatabaseCounters,
    MemoryCounters,
    RedisCounters,
)
from billfold.risk.features.ip_countries import IpCountryTable
from billfold.risk.features.service import FeatureComputer
from billfold.risk.types import FeatureValue, Movement, MovementKind

REDIS_URL = os.environ.get("BILLFOLD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
COUNTER_KINDS = ["memory", "redis", "database"]
SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
T0_NS = 1_795_000_000 * SECOND_NS + 123_456
"""A fixed moment (2026-11-18 11:06:40 UTC, a Wednesday), a little past a bucket edge."""


@asynccontextmanager
async def counter_store(kind: str, unit_of_work: UnitOfWork) -> AsyncIterator[CounterStore]:
    """A fresh store of `kind`; Redis keys under a prefix of their own, deleted after."""
    if kind == "memory":
        yield MemoryCounters(keys_max=1000)
        return
    if kind == "database":
        yield DatabaseCounters(unit_of_work=unit_of_work)
        return
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    prefix = f"billfold-test:{uuid.uuid4().hex}"
    try:
        try:
            await client.ping()
        except (RedisConnectionError, OSError) as error:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis is required under CI=true: {error}")
            pytest.skip(f"Redis unreachable: {error}")
        yield RedisCounters(client, prefix=prefix)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class World:
    """One tenant, a feature computer over one counter backend, and the database."""

    unit_of_work: UnitOfWork
    computer: FeatureComputer
    tenant_id: uuid.UUID
    user_id: uuid.UUID

    def movement(self, **changes: Any) -> Movement:
        base = Movement(
            tenant_id=self.tenant_id,
            mode="test",
            kind=MovementKind.P2P,
            amount=1000,
            currency="EUR",
            occurred_at_ns=T0_NS,
            user_id=self.user_id,
        )
        return replace(base, **changes)

    async def features(self, movement: Movement) -> dict[str, FeatureValue]:
        async with self.unit_of_work.begin() as session:
            return await self.computer.compute(session, movement)

    async def record(self, movement: Movement) -> None:
        async with self.unit_of_work.begin() as session:
            await self.computer.record(session, movement)

    async def add_user(self, *, created_at_ns: int = T0_NS - 10 * DAY_NS) -> uuid.UUID:
        async with self.unit_of_work.begin() as session:
            return await add_user(session, tenant_id=self.tenant_id, created_at_ns=created_at_ns)

    async def security_event(
        self, event_type: SecurityEventType, *, at_ns: int, user_id: uuid.UUID | None = None
    ) -> None:
        async with self.unit_of_work.begin() as session:
            await record_user_event(
                session,
                tenant_id=self.tenant_id,
                user_id=user_id or self.user_id,
                event_type=event_type,
                now_ns=at_ns,
                actor_unproven=True,
            )


async def add_user(session: AsyncSession, *, tenant_id: uuid.UUID, created_at_ns: int) -> uuid.UUID:
    user_id = new_id()
    session.add(
        EndUser(
            id=user_id,
            tenant_id=tenant_id,
            mode="test",
            email=f"{user_id.hex}@example.test",
            phone=None,
            handle=None,
            password_hash="$argon2id$not-a-real-hash",
            status="active",
            failed_login_count=0,
            locked_until=None,
            created_at=created_at_ns,
        )
    )
    await session.flush()
    return user_id


@asynccontextmanager
async def open_world(
    database_url: str,
    counters: str,
    *,
    tenant_id: uuid.UUID,
    ip_countries: IpCountryTable | None = None,
    user_facts_ttl_s: float = 0.0,
) -> AsyncIterator[World]:
    engine = create_engine(parse_database_url(database_url), pool_size=3)
    unit_of_work = UnitOfWork(engine)
    try:
        async with counter_store(counters, unit_of_work) as store:
            computer = FeatureComputer(
                store, ip_countries=ip_countries, user_facts_ttl_s=user_facts_ttl_s
            )
            world = World(unit_of_work, computer, tenant_id, uuid.uuid4())
            world.user_id = await world.add_user()
            yield world
    finally:
        await engine.dispose()

"""Helpers for identity tests: tenants and keys made through the service, rows read raw."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.app import create_app
from billfold.identity import service
from billfold.identity.service import BootstrappedTenant, CreatedApiKey
from billfold.identity.types import LIVE_ONLY_SCOPES, Mode, Scope
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings

T = TypeVar("T")


def run_in_unit_of_work(database_url: str, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``action`` in one committed unit of work on its own engine."""

    async def run() -> T:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).begin() as session:
                return await action(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def bootstrap_tenant(database_url: str, name: str = "Tenant") -> BootstrappedTenant:
    return run_in_unit_of_work(
        database_url,
        lambda session: service.bootstrap_tenant(session, name=name, now_ns=time.time_ns()),
    )


def create_key(
    database_url: str,
    *,
    tenant_id: uuid.UUID,
    scopes: list[Scope],
    mode: Mode = Mode.TEST,
    expires_at_ns: int | None = None,
    now_ns: int | None = None,
) -> CreatedApiKey:
    """A key made through the service. A test key asking for a live-only scope (which the
    service refuses, `live_only_scope`) is made as such keys were before that rule: without
    it, then the scope written into its row. Databases may still hold such keys, so tests
    of what a route does with one (`live_key_required`) and callers asking for every scope
    (`list(Scope)`) keep working; tests of the refusal itself call the service or the API."""
    legacy = sorted(LIVE_ONLY_SCOPES & set(scopes)) if mode == Mode.TEST else []

    async def create(session: AsyncSession) -> CreatedApiKey:
        allowed = [scope for scope in scopes if scope not in legacy]
        created = await service.create_api_key(
            session,
            tenant_id=tenant_id,
            name="test key",
            mode=mode,
            scopes=allowed or [Scope.LEDGER_READ],  # replaced below before the commit
            expires_at_ns=expires_at_ns,
            now_ns=time.time_ns() if now_ns is None else now_ns,
        )
        if legacy:
            created.api_key.scopes = " ".join(sorted({Scope(scope).value for scope in scopes}))
            await session.flush()
        return created

    return run_in_unit_of_work(database_url, create)


def read_row(database_url: str, *, table: str, row_id: uuid.UUID) -> dict[str, object]:
    """Every column of a row, read with plain SQL (no ORM mapping in between)."""

    async def read(session: AsyncSession) -> dict[str, object]:
        # SQLite stores UUIDs as 32 hex characters, PostgreSQL as uuid.
        key: object = row_id.hex if session.get_bind().dialect.name == "sqlite" else row_id
        result = await session.execute(text(f"SELECT * FROM {table} WHERE id = :id"), {"id": key})
        return dict(result.mappings().one())

    return run_in_unit_of_work(database_url, read)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def api_client(database_url: str) -> Iterator[TestClient]:
    """A client for the whole app, lifespan included (engine, unit of work, ledger)."""
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client

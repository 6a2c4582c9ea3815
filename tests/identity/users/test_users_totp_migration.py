"""Migration 0014: TOTP seeds get an encrypted column and the clear one becomes nullable;
it matches the model, downgrades while no seed is sealed, and refuses to drop sealed seeds
(that would switch their users' second factor off), on both backends."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from billfold.identity.users import models as users_models  # noqa: F401 (registers tables)
from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.orm import metadata
from billfold.migrations import alembic_config, upgrade
from identity.identity_support import bootstrap_tenant, run_in_unit_of_work


def _columns(database_url: str) -> tuple[set[str], list[object]]:
    def inspect(connection: Connection) -> tuple[set[str], list[object]]:
        context = MigrationContext.configure(connection)
        columns = {
            column["name"]
            for column in connection.dialect.get_columns(connection, "identity_user_totp")
        }
        diffs = [d for d in compare_metadata(context, metadata) if "identity_user_totp" in repr(d)]
        return columns, diffs

    async def run() -> tuple[set[str], list[object]]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(inspect)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _add_factor(database_url: str, *, sealed: bool) -> None:
    tenant_id = bootstrap_tenant(database_url, name="Migrated").tenant.id
    user_id = uuid.uuid4()

    async def insert(session: object) -> None:
        sqlite = session.get_bind().dialect.name == "sqlite"  # type: ignore[attr-defined]
        raw = (lambda value: value.hex) if sqlite else (lambda value: value)
        now = time.time_ns()
        await session.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO identity_users (id, tenant_id, mode, email, password_hash, status,"
                " failed_login_count, created_at) VALUES (:i, :t, 'test', :e, 'x', 'active', 0, :n)"
            ),
            {"i": raw(user_id), "t": raw(tenant_id), "e": f"{user_id.hex}@example.com", "n": now},
        )
        await session.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO identity_user_totp (user_id, secret, encrypted_secret, created_at)"
                " VALUES (:u, :s, :e, :n)"
            ),
            {
                "u": raw(user_id),
                "s": None if sealed else "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                "e": b"\x01sealed" if sealed else None,
                "n": now,
            },
        )

    run_in_unit_of_work(database_url, insert)


def test_the_migration_matches_the_model(isolated_database_url: str) -> None:
    columns, diffs = _columns(isolated_database_url)
    assert "encrypted_secret" in columns and diffs == []


def test_it_downgrades_with_clear_seeds_and_refuses_with_sealed_ones(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    _add_factor(url, sealed=False)
    command.downgrade(alembic_config(url), "0016_payments_fx")
    assert "encrypted_secret" not in _columns(url)[0]
    upgrade(url)
    assert _columns(url)[1] == []
    _add_factor(url, sealed=True)
    with pytest.raises(RuntimeError, match="encrypted"):
        command.downgrade(alembic_config(url), "0016_payments_fx")
    assert "encrypted_secret" in _columns(url)[0]

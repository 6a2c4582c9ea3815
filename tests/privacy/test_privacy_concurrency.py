"""Writes to the vault that overlap: two requests storing the same user's new field at
once (on PostgreSQL both find no row and both insert; the second must update the first's
row, not fail on the unique key), and a store racing the user's erasure, here or in a
process whose cache still holds the user's key (nothing of the user may survive it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from billfold.identity.types import Mode, Scope
from billfold.keys.config import keyring_from_settings
from billfold.keys.errors import KeyDestroyed
from billfold.kit.auth import Principal
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import parse_id
from billfold.privacy import service
from billfold.privacy.fields import PiiField
from privacy.privacy_support import (
    PrivacyTenant,
    auth,
    new_privacy_tenant,
    privacy_client,
    privacy_settings,
    sign_up,
)
from privacy.test_privacy_api import PII
from privacy.test_privacy_erasure import _ciphertexts


def test_concurrent_first_writes_of_a_field_both_succeed(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user_id = parse_id("usr", sign_up(client, tenant.writer))
    asyncio.run(_race(database_url, tenant.tenant_id, user_id))
    with privacy_client(database_url) as client:
        got = client.get(f"/v1/users/usr_{user_id.hex}/pii", headers=auth(tenant.writer))
        assert got.json()["fields"] == {"name": "B** S*****"}


def _principal(tenant_id: uuid.UUID) -> Principal:
    return Principal(
        tenant_id=tenant_id,
        api_key_id=uuid.uuid4(),
        mode=Mode.TEST,
        scopes=frozenset({Scope.USERS_ADMIN.value, Scope.PII_WRITE.value}),
    )


async def _race(database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    principal = _principal(tenant_id)
    keyring = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    first_wrote, first_may_commit = asyncio.Event(), asyncio.Event()

    async def put(name: str, *, first: bool) -> None:
        async with unit_of_work.begin() as session:
            await service.put_pii(
                session,
                keyring=keyring,
                principal=principal,
                user_id=user_id,
                values={PiiField.NAME: name},
                now_ns=1,
            )
            if first:
                first_wrote.set()
                await first_may_commit.wait()

    try:
        # The data keys exist first, so that only the vault row is contended.
        await put("Warm Up", first=False)
        async with unit_of_work.begin() as session:
            await session.execute(
                service.PiiValue.__table__.delete().where(service.PiiValue.user_id == user_id)
            )
        writer = asyncio.create_task(put("Ann First", first=True))
        await first_wrote.wait()
        second = asyncio.create_task(put("Bea Second", first=False))
        await asyncio.sleep(0.2)  # the second blocks on the first's row (PostgreSQL)
        first_may_commit.set()
        await asyncio.wait_for(asyncio.gather(writer, second), timeout=30)
        async with unit_of_work.begin() as session:
            values = await service.read_pii(
                session,
                keyring=keyring,
                principal=principal,
                user_id=user_id,
                now_ns=2,
                audit_reveal=False,
            )
        assert values == {PiiField.NAME: "Bea Second"}
    finally:
        await engine.dispose()
        keyring.close()


def _search_email(database_url: str, key: str) -> list[str]:
    with privacy_client(database_url) as client:
        response = client.post(
            "/v1/pii/search", json={"field": "email", "value": PII["email"]}, headers=auth(key)
        )
    found: list[str] = response.json()["user_ids"]
    return found


def test_a_store_racing_an_erasure_leaves_nothing_of_the_user(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite transactions do not overlap: BEGIN IMMEDIATE serializes them")
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        client.put(f"/v1/users/{user}/pii", json={"name": "Ann"}, headers=auth(tenant.writer))
    asyncio.run(_store_during_erasure(database_url, tenant.tenant_id, parse_id("usr", user)))
    assert _ciphertexts(database_url, parse_id("usr", user)) == []
    assert _search_email(database_url, tenant.writer) == []


async def _store_during_erasure(
    database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    principal = _principal(tenant_id)
    keyring = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    stored, store_may_commit = asyncio.Event(), asyncio.Event()

    async def store() -> None:
        async with unit_of_work.begin() as session:
            await service.put_pii(
                session,
                keyring=keyring,
                principal=principal,
                user_id=user_id,
                values={PiiField.EMAIL: PII["email"]},
                now_ns=1,
            )
            stored.set()
            await store_may_commit.wait()

    async def erase() -> None:
        async with unit_of_work.begin() as session:
            await service.erase_user(
                session, keyring=keyring, principal=principal, user_id=user_id, now_ns=2
            )

    try:
        storing = asyncio.create_task(store())
        await stored.wait()
        erasing = asyncio.create_task(erase())
        await asyncio.sleep(0.2)  # the erasure waits for the store's lock on the user
        store_may_commit.set()
        await asyncio.wait_for(asyncio.gather(storing, erasing), timeout=30)
    finally:
        await engine.dispose()
        keyring.close()


def test_a_process_with_the_users_key_cached_cannot_store_after_their_erasure(
    database_url: str,
) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        client.put(f"/v1/users/{user}/pii", json={"name": "Ann"}, headers=auth(tenant.writer))
        asyncio.run(_store_after_erasure(database_url, client, tenant, user))
        assert client.get(f"/v1/users/{user}/pii", headers=auth(tenant.reader)).json() == {
            "user_id": user,
            "masked": False,
            "fields": {},
        }
    assert _ciphertexts(database_url, parse_id("usr", user)) == []
    assert _search_email(database_url, tenant.writer) == []


async def _store_after_erasure(
    database_url: str, client: TestClient, tenant: PrivacyTenant, user: str
) -> None:
    """Another process stores the user's name (its cache now holds their data key), this
    one erases them, then the other process stores their email."""
    principal, user_id = _principal(tenant.tenant_id), parse_id("usr", user)
    other = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=1)

    async def store(field: PiiField, value: str) -> None:
        async with UnitOfWork(engine).begin() as session:
            await service.put_pii(
                session,
                keyring=other,
                principal=principal,
                user_id=user_id,
                values={field: value},
                now_ns=1,
            )

    try:
        await store(PiiField.NAME, "Ann Again")
        erased = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        assert erased.status_code == 200, erased.text
        with pytest.raises(KeyDestroyed):
            await store(PiiField.EMAIL, PII["email"])
    finally:
        await engine.dispose()
        other.close()

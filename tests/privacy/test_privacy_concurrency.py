"""Two requests storing the same user's new field at once: on PostgreSQL both find no row
and both insert; the second must update the first's row, not fail on the unique key."""

from __future__ import annotations

import asyncio
import uuid

from billfold.identity.types import Mode, Scope
from billfold.keys.config import keyring_from_settings
from billfold.kit.auth import Principal
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import parse_id
from billfold.privacy import service
from billfold.privacy.fields import PiiField
from privacy.privacy_support import (
    auth,
    new_privacy_tenant,
    privacy_client,
    privacy_settings,
    sign_up,
)


def test_concurrent_first_writes_of_a_field_both_succeed(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user_id = parse_id("usr", sign_up(client, tenant.writer))
    asyncio.run(_race(database_url, tenant.tenant_id, user_id))
    with privacy_client(database_url) as client:
        got = client.get(f"/v1/users/usr_{user_id.hex}/pii", headers=auth(tenant.writer))
        assert got.json()["fields"] == {"name": "B** S*****"}


async def _race(database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    principal = Principal(
        tenant_id=tenant_id,
        api_key_id=uuid.uuid4(),
        mode=Mode.TEST,
        scopes=frozenset({Scope.USERS_ADMIN.value, Scope.PII_WRITE.value}),
    )
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

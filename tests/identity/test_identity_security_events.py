"""The security event log: key events are recorded with the change, and rows never change."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from billfold.identity import service
from billfold.identity.security_events import SecurityEventType, list_security_events
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url

pytestmark = pytest.mark.anyio


async def test_creating_and_revoking_a_key_is_recorded(isolated_database_url: str) -> None:
    engine = create_engine(parse_database_url(isolated_database_url), pool_size=1)
    unit_of_work = UnitOfWork(engine)
    try:
        async with unit_of_work.begin() as session:
            bootstrapped = await service.bootstrap_tenant(session, name="Acme", now_ns=1)
            tenant_id = bootstrapped.tenant.id
        async with unit_of_work.begin() as session:
            await service.revoke_api_key_any_tenant(
                session, api_key_id=bootstrapped.test_key.api_key.id, now_ns=2
            )
        async with unit_of_work.begin() as session:
            events = await list_security_events(session, tenant_id=tenant_id, limit=10)
        kinds = [event.event_type for event in reversed(events)]
        assert kinds == [
            SecurityEventType.TENANT_CREATED,
            SecurityEventType.API_KEY_CREATED,
            SecurityEventType.API_KEY_CREATED,
            SecurityEventType.API_KEY_REVOKED,
        ]
        assert all(bootstrapped.test_key.secret not in event.detail for event in events)
        with pytest.raises(Exception, match="immutable"):  # the driver decides the class
            async with unit_of_work.begin() as session:
                await session.execute(text("DELETE FROM identity_security_events"))
    finally:
        await engine.dispose()

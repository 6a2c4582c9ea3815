"""Identity's changes reach the outbox in their own transaction: user created and updated,
device bound and revoked, MFA enrolled, API key created and revoked, as CloudEvents types
with documented payloads that carry no secret and no personal data."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.models import OutboxEvent
from billfold.identity import outbox_events
from billfold.identity import service as identity_service
from billfold.identity.types import Mode, Scope
from billfold.identity.users import service as users_service
from billfold.identity.users.totp import totp_code
from billfold.kit.auth import Principal
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.identity_support import run_in_unit_of_work
from identity.users.users_support import (
    PASSWORD,
    DeviceKey,
    bearer,
    bind_device,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

README = Path(__file__).resolve().parents[2] / "README.md"
EMAIL = "ann.identity-events@example.com"


def outbox(database_url: str, tenant_id: uuid.UUID) -> list[OutboxEvent]:
    async def read(session: AsyncSession) -> list[OutboxEvent]:
        rows = await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.tenant_id == tenant_id)
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        )
        return list(rows)

    return run_in_unit_of_work(database_url, read)


def test_user_device_mfa_and_key_changes_write_their_events(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock(start_ns=time.time_ns())
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy, email=EMAIL)
        headers = bearer(tokens["access_token"])
        device = bind_device(client, tokens["access_token"], DeviceKey("ed25519"))
        revoked = client.post(f"/v1/me/devices/{device['id']}/revoke", headers=headers)
        assert revoked.status_code == 200, revoked.text
        seed = client.post("/v1/me/mfa/totp", headers=headers).json()["secret"]
        code = totp_code(seed, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
        confirmed = client.post(
            "/v1/me/mfa/totp/confirm", json={"code": code, "password": PASSWORD}, headers=headers
        )
        assert confirmed.status_code == 200, confirmed.text
        recovery_codes = confirmed.json()["recovery_codes"]
    events = outbox(database_url, tenancy.tenant_id)
    by_type: dict[str, list[OutboxEvent]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)

    [created] = by_type[outbox_events.USER_CREATED]
    user_id = created.aggregate_id
    assert created.mode == "test" and created.subject == f"usr_{user_id.hex}"
    assert created.data["identifiers"] == ["email"] and created.data["status"] == "active"
    [bound] = by_type[outbox_events.DEVICE_BOUND]
    [gone] = by_type[outbox_events.DEVICE_REVOKED]
    assert bound.data["device_id"] == gone.data["device_id"] == device["id"]
    assert bound.data["algorithm"] == "ed25519"
    factors = sorted(e.data["factor"] for e in by_type[outbox_events.MFA_ENROLLED])
    assert factors == ["recovery_codes", "totp"]
    users_events = [e for e in events if e.aggregate_id == user_id]
    assert len(users_events) == 5, "one aggregate: the user's events stay in order"
    assert all(e.data["user_id"] == f"usr_{user_id.hex}" for e in users_events)
    # The API keys the tenancy made (bootstrap and users:admin) have their events too.
    assert {e.mode for e in by_type[outbox_events.API_KEY_CREATED]} == {"test", "live"}
    text = json.dumps([e.data for e in events])
    for secret in (EMAIL, seed, tenancy.test_key.secret, *recovery_codes):
        assert secret not in text


def test_revoking_a_key_and_erasing_a_user_write_their_events(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    principal = Principal(
        tenant_id=tenancy.tenant_id,
        mode=Mode.TEST,
        api_key_id=tenancy.test_key.api_key.id,
        scopes=frozenset({Scope.USERS_ADMIN}),
    )
    now_ns = time.time_ns()

    async def change(session: AsyncSession) -> uuid.UUID:
        created = await identity_service.create_api_key(
            session,
            tenant_id=tenancy.tenant_id,
            name="ci",
            mode=Mode.LIVE,
            scopes=[Scope.EVENTS_READ],
            expires_at_ns=None,
            now_ns=now_ns,
        )
        await identity_service.revoke_api_key_any_tenant(
            session, api_key_id=created.api_key.id, now_ns=now_ns + 1
        )
        user = await users_service.create_user(
            session,
            principal=principal,
            email=EMAIL,
            phone=None,
            handle=None,
            password="correct horse battery",
            config=users_config(),
            now_ns=now_ns,
        )
        await users_service.erase_user_identifiers(
            session, principal=principal, user_id=user.id, now_ns=now_ns + 2
        )
        return created.api_key.id

    key_id = run_in_unit_of_work(database_url, change)
    events = outbox(database_url, tenancy.tenant_id)
    mine = [e for e in events if e.aggregate_id == key_id]
    assert [e.type for e in mine] == [outbox_events.API_KEY_CREATED, outbox_events.API_KEY_REVOKED]
    assert mine[0].mode == "live" and mine[0].data["scopes"] == ["events:read"]
    assert mine[0].data["name"] == "ci" and mine[1].data["api_key_id"] == f"key_{key_id.hex}"
    [updated] = [e for e in events if e.type == outbox_events.USER_UPDATED]
    assert updated.data["status"] == "disabled"
    assert updated.data["changed"] == ["email", "handle", "phone", "status"]
    assert updated.data["identifiers"] == ["handle"]  # the pseudonym, not a person's data
    assert EMAIL not in json.dumps([e.data for e in events])


def test_every_identity_event_type_is_documented_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    documented: dict[str, Any] = {t: f"`{t}`" in readme for t in outbox_events.IDENTITY_EVENT_TYPES}
    assert all(documented.values()), documented

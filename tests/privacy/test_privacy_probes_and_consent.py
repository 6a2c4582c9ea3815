"""Probing for tokens leaves a trace, a consent purpose has one version in force, and an
erased user gets no new consent: over HTTP, on both backends."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from sqlalchemy import text

from billfold.identity.types import Mode, Scope
from billfold.keys.config import keyring_from_settings
from billfold.kit.auth import Principal
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import parse_id
from billfold.privacy import service
from identity.identity_support import run_in_unit_of_work
from privacy.privacy_support import (
    auth,
    new_privacy_tenant,
    privacy_client,
    privacy_settings,
    sign_up,
)


def _event_rows(database_url: str, tenant_id: uuid.UUID) -> list[tuple[str, str | None, str]]:
    """(event_type, subject_id, detail) of the tenant's security events, oldest first."""

    async def read(session: object) -> list[tuple[str, str | None, str]]:
        key = tenant_id.hex if session.get_bind().dialect.name == "sqlite" else tenant_id  # type: ignore[attr-defined]
        rows = await session.execute(  # type: ignore[attr-defined]
            text(
                "SELECT event_type, subject_id, detail FROM identity_security_events"
                " WHERE tenant_id = :t ORDER BY occurred_at, id"
            ),
            {"t": key},
        )
        return [(row[0], row[1], row[2]) for row in rows]

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


def _audit_actions(database_url: str) -> list[str]:
    async def read(session: object) -> list[str]:
        rows = await session.execute(text("SELECT action FROM audit_entries"))  # type: ignore[attr-defined]
        return [row[0] for row in rows]

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


def test_a_failed_detokenize_is_recorded_without_the_token(database_url: str) -> None:
    tenant, other = new_privacy_tenant(database_url), new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        created = client.post(
            "/v1/tokens",
            json={"kind": "pan", "value": "4242 4242 4242 4242"},
            headers=auth(tenant.writer),
        )
        assert created.status_code == 200, created.text
        surrogate = created.json()["token"]
        guessed = "9" + "0" * 11 + "4242"
        unknown = client.post(
            "/v1/tokens/detokenize",
            json={"kind": "pan", "token": guessed},
            headers=auth(tenant.detokenizer),
        )
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["code"] == "token_not_found"
        wrong_kind = client.post(
            "/v1/tokens/detokenize",
            json={"kind": "bank_account", "token": surrogate},
            headers=auth(tenant.detokenizer),
        )
        assert wrong_kind.status_code == 404
        # Another tenant's caller probing this tenant's token: recorded in its own tenant.
        stranger = client.post(
            "/v1/tokens/detokenize",
            json={"kind": "pan", "token": surrogate},
            headers=auth(other.detokenizer),
        )
        assert stranger.status_code == 404
    failures = [
        row for row in _event_rows(database_url, tenant.tenant_id) if row[0] != "pii.detokenized"
    ]
    failed = [row for row in failures if row[0] == "pii.detokenize_failed"]
    assert len(failed) == 2
    assert {json.loads(row[2])["kind"] for row in failed} == {"pan", "bank_account"}
    stranger_events = _event_rows(database_url, other.tenant_id)
    assert [row[0] for row in stranger_events].count("pii.detokenize_failed") == 1
    assert "pii.detokenized" not in [row[0] for row in _event_rows(database_url, tenant.tenant_id)]
    for _type, subject, detail in failed + stranger_events:
        assert guessed not in (subject or "") + detail
        assert surrogate not in (subject or "") + detail
    assert _audit_actions(database_url).count("pii.detokenize_failed") >= 3


def test_granting_a_purpose_again_supersedes_the_version_in_force(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        for purpose, version in (
            ("marketing", "2026-01"),
            ("analytics", "1"),
            ("marketing", "2026-02"),
        ):
            granted = client.post(
                f"/v1/users/{user}/consents",
                json={"purpose": purpose, "version": version},
                headers=auth(tenant.writer),
            )
            assert granted.status_code == 201, granted.text
            assert granted.json()["withdrawn_at"] is None
        listed = client.get(f"/v1/users/{user}/consents", headers=auth(tenant.writer)).json()
        in_force = [
            (item["purpose"], item["version"])
            for item in listed["items"]
            if item["withdrawn_at"] is None
        ]
        assert sorted(in_force) == [("analytics", "1"), ("marketing", "2026-02")]
        ended = [item for item in listed["items"] if item["withdrawn_at"] is not None]
        assert [(item["purpose"], item["version"]) for item in ended] == [("marketing", "2026-01")]
        # Withdrawing ends the one version in force, and nothing is left of the purpose.
        withdrawn = client.post(
            f"/v1/users/{user}/consents/marketing/withdraw", headers=auth(tenant.writer)
        )
        assert withdrawn.status_code == 200
        assert [item["version"] for item in withdrawn.json()["items"]] == ["2026-02"]


def test_an_erased_user_gets_no_new_consent(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.reader)
        stored = client.put(
            f"/v1/users/{user}/pii", json={"name": "Zhang Wei"}, headers=auth(tenant.reader)
        )
        assert stored.status_code == 200, stored.text
        erased = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        assert erased.status_code == 200, erased.text
        refused = client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "marketing", "version": "2026-01"},
            headers=auth(tenant.writer),
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "key_destroyed"
        listed = client.get(f"/v1/users/{user}/consents", headers=auth(tenant.writer)).json()
        assert listed["items"] == []
    assert "consent.granted" not in [row[0] for row in _event_rows(database_url, tenant.tenant_id)]


def test_a_user_erased_before_any_pii_gets_none_afterwards(database_url: str) -> None:
    """Erasure destroyed the user's data keys, and "destroyed" is what refused later
    stores: a user erased before any PII was stored had none, so a store after the
    erasure was accepted, searchable and exported."""
    tenant = new_privacy_tenant(database_url)
    email = f"gone{uuid.uuid4().hex[:8]}@example.com"
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.reader, email=email)
        erased = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        assert erased.status_code == 200, erased.text
        assert erased.json()["data_keys_destroyed"] == 0
        stored = client.put(
            f"/v1/users/{user}/pii", json={"email": email}, headers=auth(tenant.reader)
        )
        assert stored.status_code == 422, stored.text
        assert stored.json()["code"] == "key_destroyed"
        consent = client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "marketing", "version": "1"},
            headers=auth(tenant.writer),
        )
        assert consent.status_code == 422 and consent.json()["code"] == "key_destroyed"
        found = client.post(
            "/v1/pii/search", json={"field": "email", "value": email}, headers=auth(tenant.reader)
        )
        assert found.status_code == 200 and found.json()["user_ids"] == []
        exported = client.get(f"/v1/users/{user}/export", headers=auth(tenant.reader))
        assert exported.status_code == 200
        assert exported.json()["pii"] == {} and exported.json()["user"]["email"] is None
        again = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        assert again.status_code == 200, again.text
        assert again.json()["data_keys_destroyed"] == 0


def test_concurrent_grants_of_a_purpose_leave_one_in_force(database_url: str) -> None:
    """On PostgreSQL two grants that overlap both found nothing in force to supersede: the
    user's row is locked, so the second waits for the first and supersedes it."""
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user_id = parse_id("usr", sign_up(client, tenant.writer))
    asyncio.run(_grant_race(database_url, tenant.tenant_id, user_id))
    with privacy_client(database_url) as client:
        listed = client.get(f"/v1/users/usr_{user_id.hex}/consents", headers=auth(tenant.writer))
        in_force = [item["version"] for item in listed.json()["items"] if not item["withdrawn_at"]]
        assert in_force == ["2"], listed.text


async def _grant_race(database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    principal = Principal(
        tenant_id=tenant_id,
        api_key_id=uuid.uuid4(),
        mode=Mode.TEST,
        scopes=frozenset({Scope.PII_WRITE.value}),
    )
    keyring = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    first_granted, first_may_commit = asyncio.Event(), asyncio.Event()

    async def grant(version: str) -> None:
        async with unit_of_work.begin() as session:
            await service.grant_consent(
                session,
                principal=principal,
                user_id=user_id,
                purpose="marketing",
                version=version,
                keyring=keyring,
                now_ns=time.time_ns(),
            )
            if version == "1":
                first_granted.set()
                await first_may_commit.wait()

    try:
        first = asyncio.create_task(grant("1"))
        await first_granted.wait()
        second = asyncio.create_task(grant("2"))
        await asyncio.sleep(0.3)  # the second is now waiting for the first's lock
        first_may_commit.set()
        await asyncio.gather(first, second)
    finally:
        keyring.close()
        await engine.dispose()

"""What an erased user leaves behind, on both backends: a user signs up, signs in, names a
device and a passkey, is erased; afterwards no table (the hash-chained logs included, which
never receive these values) still holds their email, phone or the names they chose, nor
the credentials that only served signing in (password hash, TOTP seed)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from billfold.identity.security_events import list_security_events
from billfold.kit.ids import parse_id
from billfold.kit.orm import Base
from identity.identity_support import run_in_unit_of_work
from identity.users.software_authenticator import SoftwareAuthenticator
from identity.users.users_support import (
    ORIGIN,
    PASSWORD,
    RELYING_PARTY,
    DeviceKey,
    bearer,
    enrol_totp,
)
from privacy.privacy_support import auth, new_privacy_tenant, privacy_client, sign_up


def _tables_holding(database_url: str, needles: list[str]) -> dict[str, set[str]]:
    """For each needle, the tables (any column, text or bytes) that hold it."""

    async def read(session: Any) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {needle: set() for needle in needles}
        for table in Base.metadata.sorted_tables:
            for row in await session.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    for needle in needles:
                        if needle.encode() in blob:
                            found[needle].add(table.name)
        return found

    return run_in_unit_of_work(database_url, read)


def _user_with_a_device_and_a_passkey(
    client: TestClient, writer: str, *, email: str, phone: str, device: str, passkey: str
) -> tuple[str, dict[str, Any]]:
    """The new user's id and token pair."""
    created = client.post(
        "/v1/users",
        json={"email": email, "phone": phone, "password": PASSWORD},
        headers=auth(writer),
    )
    assert created.status_code == 201, created.text
    tenant_id = created.json()["tenant_id"]
    signed_in = client.post(
        "/v1/sessions",
        json={"tenant_id": tenant_id, "mode": "test", "identifier": email, "password": PASSWORD},
    )
    assert signed_in.status_code == 200, signed_in.text
    access = signed_in.json()["tokens"]["access_token"]
    key = DeviceKey("ed25519")
    bound = client.post(
        "/v1/me/devices",
        json={
            "name": device,
            "algorithm": "ed25519",
            "public_key": key.public_key(),
            "password": PASSWORD,
        },
        headers=bearer(access),
    )
    assert bound.status_code == 201, bound.text
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    options = client.post("/v1/me/passkeys/options", headers=bearer(access)).json()["options"]
    registered = client.post(
        "/v1/me/passkeys",
        json={"name": passkey, "credential": authenticator.create(options), "password": PASSWORD},
        headers=bearer(access),
    )
    assert registered.status_code == 201, registered.text
    user_id: str = created.json()["id"]
    tokens: dict[str, Any] = signed_in.json()["tokens"]
    return user_id, tokens


def test_erasure_leaves_no_identifier_nor_chosen_name_in_any_table(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    marker = uuid.uuid4().hex[:10]
    email = f"jane-{marker}@example.com"
    phone = "+8613" + str(uuid.uuid4().int)[:9]
    device, passkey = f"Jane Doe's iPhone {marker}", f"Jane's MacBook {marker}"
    kept_device = f"Kim's Pixel {marker}"
    with privacy_client(database_url) as client:
        erased, tokens = _user_with_a_device_and_a_passkey(
            client, tenant.writer, email=email, phone=phone, device=device, passkey=passkey
        )
        _user_with_a_device_and_a_passkey(
            client,
            tenant.writer,
            email=f"kim-{marker}@example.com",
            phone="+8613" + str(uuid.uuid4().int)[:9],
            device=kept_device,
            passkey=f"Kim's key {marker}",
        )
        before = _tables_holding(database_url, [email, phone, device, passkey])
        response = client.post(f"/v1/users/{erased}/erasure", headers=auth(tenant.reader))
        assert response.status_code == 200, response.text
        refreshed = client.post(
            "/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    assert before == {
        email: {"identity_users"},
        phone: {"identity_users"},
        device: {"identity_user_devices"},
        passkey: {"identity_user_passkeys"},
    }
    after = _tables_holding(database_url, [email, phone, device, passkey, kept_device])
    assert after == {email: set(), phone: set(), device: set(), passkey: set()} | {
        kept_device: {"identity_user_devices"}
    }
    assert refreshed.status_code == 401, refreshed.text
    failures = [
        detail
        for kind, detail in _events(database_url, tenant.tenant_id)
        if kind == "refresh.failed"
    ]
    assert [(d["reason"], d["session_id"]) for d in failures] == [
        ("user_disabled", tokens["session_id"])
    ]


def _events(database_url: str, tenant_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async def read(session: Any) -> list[tuple[str, dict[str, Any]]]:
        events = await list_security_events(session, tenant_id=tenant_id, limit=500)
        return [(event.event_type, json.loads(event.detail)) for event in events]

    return run_in_unit_of_work(database_url, read)


def _credentials(database_url: str, user_id: str) -> tuple[str, int]:
    """The user's stored password hash and how many TOTP authenticators they keep."""

    async def read(session: Any) -> tuple[str, int]:
        row_id = parse_id("usr", user_id)
        key: object = row_id.hex if session.get_bind().dialect.name == "sqlite" else row_id
        password_hash = await session.scalar(
            text("SELECT password_hash FROM identity_users WHERE id = :u"), {"u": key}
        )
        totp = await session.scalar(
            text("SELECT count(*) FROM identity_user_totp WHERE user_id = :u"), {"u": key}
        )
        return str(password_hash), int(totp)

    return run_in_unit_of_work(database_url, read)


def test_erasure_forgets_the_password_hash_and_the_totp_seed(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    email = f"totp-{uuid.uuid4().hex[:10]}@example.com"
    with privacy_client(database_url) as client:
        user_id = sign_up(client, tenant.writer, email=email)
        signed_in = client.post(
            "/v1/sessions",
            json={
                "tenant_id": f"ten_{tenant.tenant_id.hex}",
                "mode": "test",
                "identifier": email,
                "password": PASSWORD,
            },
        )
        assert signed_in.status_code == 200, signed_in.text
        enrol_totp(
            client, signed_in.json()["tokens"]["access_token"], client.app.state.users_config.clock
        )
        password_hash, authenticators = _credentials(database_url, user_id)
        erased = client.post(f"/v1/users/{user_id}/erasure", headers=auth(tenant.reader))
        assert erased.status_code == 200, erased.text
    assert password_hash.startswith("$argon2id$")
    assert authenticators == 1
    after_hash, after_authenticators = _credentials(database_url, user_id)
    assert after_authenticators == 0
    assert after_hash != password_hash
    assert not after_hash.startswith("$argon2")  # matches no password, leaks none

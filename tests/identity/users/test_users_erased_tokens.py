"""After an erasure, the access tokens the user held before stop working at once, on every
kind of route: plain ``/v1/me/*`` reads and writes and device-signed requests. And a user's
session list holds their own sessions only."""

from __future__ import annotations

import time

from httpx import Response

from identity.users.users_support import (
    PASSWORD,
    DeviceKey,
    assert_problem,
    bearer,
    bind_device,
)
from privacy.privacy_support import auth, new_privacy_tenant, privacy_client, signed_in_user


def test_an_erased_users_access_token_stops_working_everywhere(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user, access, _ = signed_in_user(client, tenant.writer)
        key = DeviceKey("ed25519")
        device_id = bind_device(client, access, key)["id"]
        target = "/v1/me/devices/verify-signature"

        def signed() -> Response:
            headers = key.headers(
                device_id=device_id,
                method="POST",
                target=target,
                body=b"",
                timestamp_s=int(time.time()),
            )
            return client.post(target, headers={**bearer(access), **headers})

        assert signed().status_code == 200
        erased = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        assert erased.status_code == 200, erased.text
        answers = [
            client.get("/v1/me", headers=bearer(access)),
            client.get("/v1/me/sessions", headers=bearer(access)),
            client.get("/v1/me/devices", headers=bearer(access)),
            client.get("/v1/me/passkeys", headers=bearer(access)),
            client.post("/v1/me/mfa/totp", headers=bearer(access)),
            client.post(
                "/v1/me/step-up",
                json={
                    "amount": 100,
                    "currency": "USD",
                    "payee": "bob",
                    "method": "device",
                    "device_id": device_id,
                },
                headers=bearer(access),
            ),
            client.post(
                "/v1/me/devices",
                json={
                    "name": "Phone 2",
                    "algorithm": "ed25519",
                    "public_key": DeviceKey("ed25519").public_key(),
                    "password": PASSWORD,
                },
                headers=bearer(access),
            ),
            signed(),
        ]
    for answer in answers:
        assert_problem(answer, 401, "unauthorized")


def test_a_users_session_list_holds_their_own_sessions_only(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        _, ann, ann_session = signed_in_user(client, tenant.writer)
        _, bob, bob_session = signed_in_user(client, tenant.writer)
        listed = client.get("/v1/me/sessions", headers=bearer(ann)).json()["items"]
        foreign = client.post(f"/v1/me/sessions/{bob_session}/revoke", headers=bearer(ann))
        bob_still = client.get("/v1/me", headers=bearer(bob))
    assert [item["id"] for item in listed] == [ann_session]
    assert_problem(foreign, 404, "session_not_found")
    assert bob_still.status_code == 200

"""Bound devices: Ed25519 and P-256 keys, signed requests (accepted, tampered, replayed,
stale), revocation, and their security events."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from billfold.identity.users.devices import DEVICE_CLOCK_SKEW_S, DEVICES_PER_USER_MAX
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.users_support import (
    PASSWORD,
    DeviceKey,
    assert_problem,
    bearer,
    bind_device,
    event_log,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

TARGET = "/v1/me/devices/verify-signature"
ALGORITHMS = ["ed25519", "p256"]


def _signed_post(
    client: TestClient,
    *,
    access_token: str,
    key: DeviceKey,
    device_id: str,
    clock: ManualClock,
    body: bytes = b'{"amount": 100}',
    sent_body: bytes | None = None,
    nonce: str | None = None,
    skew_s: int = 0,
) -> tuple[int, dict[str, str]]:
    timestamp_s = clock.now_ns() // NANOSECONDS_PER_SECOND + skew_s
    headers = key.headers(
        device_id=device_id,
        method="POST",
        target=TARGET,
        body=body,
        timestamp_s=timestamp_s,
        nonce=nonce,
    )
    response = client.post(
        TARGET,
        content=body if sent_body is None else sent_body,
        headers={**bearer(access_token), **headers, "Content-Type": "application/json"},
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_signed_request_is_accepted_once(database_url: str, algorithm: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key = DeviceKey(algorithm)
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        device = bind_device(client, tokens["access_token"], key)
        nonce = "nonce-" + "a" * 20
        sign = {"access_token": tokens["access_token"], "key": key, "device_id": device["id"]}
        accepted = _signed_post(client, clock=clock, nonce=nonce, **sign)
        replayed = _signed_post(client, clock=clock, nonce=nonce, **sign)
        tampered = _signed_post(client, clock=clock, sent_body=b'{"amount": 900}', **sign)
        stale = _signed_post(client, clock=clock, skew_s=-DEVICE_CLOCK_SKEW_S - 1, **sign)
        future = _signed_post(client, clock=clock, skew_s=DEVICE_CLOCK_SKEW_S + 1, **sign)
        edge = _signed_post(client, clock=clock, skew_s=-DEVICE_CLOCK_SKEW_S, **sign)
        listed = client.get("/v1/me/devices", headers=bearer(tokens["access_token"])).json()
    assert accepted == (200, {"device_id": device["id"], "verified": True})
    for status, body in (replayed, tampered, stale, future):
        assert status == 401
        assert body["code"] == "device_signature_invalid"
    assert "already used" in replayed[1]["detail"]
    assert "clock" in stale[1]["detail"]
    assert edge[0] == 200
    assert listed["items"][0]["algorithm"] == algorithm
    assert listed["items"][0]["last_used_at"] is not None


def test_a_signature_is_bound_to_method_path_and_device(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key, other_key = DeviceKey("ed25519"), DeviceKey("p256")
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        device = bind_device(client, tokens["access_token"], key)
        other = bind_device(client, tokens["access_token"], other_key)
        now_s = clock.now_ns() // NANOSECONDS_PER_SECOND
        body = b"{}"
        auth = bearer(tokens["access_token"])
        other_path = key.headers(
            device_id=device["id"],
            method="POST",
            target="/v1/me/devices",
            body=body,
            timestamp_s=now_s,
        )
        other_method = key.headers(
            device_id=device["id"], method="PUT", target=TARGET, body=body, timestamp_s=now_s
        )
        wrong_key = key.headers(
            device_id=other["id"], method="POST", target=TARGET, body=body, timestamp_s=now_s
        )
        unsigned = client.post(TARGET, content=body, headers=auth)
        responses = [
            client.post(TARGET, content=body, headers={**auth, **headers})
            for headers in (other_path, other_method, wrong_key)
        ]
        without_token = client.post(
            TARGET,
            content=body,
            headers=key.headers(
                device_id=device["id"], method="POST", target=TARGET, body=body, timestamp_s=now_s
            ),
        )
    assert_problem(unsigned, 401, "device_signature_invalid")
    for response in responses:
        assert_problem(response, 401, "device_signature_invalid")
    assert_problem(without_token, 401, "unauthorized")


def test_a_revoked_or_foreign_device_signs_nothing(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key = DeviceKey("p256")
    with users_client(database_url, users_config(clock)) as client:
        ann = signed_in(client, tenancy)
        bob = signed_in(client, tenancy, email="bob@example.com")
        device = bind_device(client, ann["access_token"], key)
        by_bob = _signed_post(
            client, access_token=bob["access_token"], key=key, device_id=device["id"], clock=clock
        )
        foreign_revoke = client.post(
            f"/v1/me/devices/{device['id']}/revoke", headers=bearer(bob["access_token"])
        )
        revoked = client.post(
            f"/v1/me/devices/{device['id']}/revoke", headers=bearer(ann["access_token"])
        )
        again = client.post(
            f"/v1/me/devices/{device['id']}/revoke", headers=bearer(ann["access_token"])
        )
        after = _signed_post(
            client, access_token=ann["access_token"], key=key, device_id=device["id"], clock=clock
        )
        listed = client.get("/v1/me/devices", headers=bearer(ann["access_token"])).json()
    assert by_bob[0] == 401
    assert_problem(foreign_revoke, 404, "device_not_found")
    assert revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert after[0] == 401
    assert listed["items"] == []
    events = [
        (t, d) for t, d in event_log(database_url, tenancy.tenant_id) if t.startswith("device.")
    ]
    assert [(t, d["device_id"]) for t, d in events] == [
        ("device.bound", device["id"]),
        ("device.revoked", device["id"]),
    ]


def _der(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(der).rstrip(b"=").decode()


def test_only_well_formed_keys_of_the_named_algorithm_bind(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    p384 = _der(ec.generate_private_key(ec.SECP384R1()).public_key())
    ed25519_key = DeviceKey("ed25519").public_key()
    cases = {
        "ed25519 named p256": ("p256", ed25519_key, 422, "invalid_device_key"),
        "p256 named ed25519": (
            "ed25519",
            DeviceKey("p256").public_key(),
            422,
            "invalid_device_key",
        ),
        "p384": ("p256", p384, 422, "invalid_device_key"),
        "garbage": ("ed25519", "AAAA", 422, "invalid_device_key"),
        "not base64url": ("ed25519", "a+b/", 422, "validation_failed"),
        "unknown algorithm": ("rsa", ed25519_key, 422, "validation_failed"),
        "oversized": ("ed25519", "A" * 400, 422, "validation_failed"),
    }
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        for case, (algorithm, public_key, status, code) in cases.items():
            response = client.post(
                "/v1/me/devices",
                json={
                    "name": "Phone",
                    "algorithm": algorithm,
                    "public_key": public_key,
                    "password": PASSWORD,
                },
                headers=headers,
            )
            assert response.status_code == status, (case, response.text)
            assert_problem(response, status, code)
        listed = client.get("/v1/me/devices", headers=headers).json()
    assert listed["items"] == []
    assert "device.bound" not in [t for t, _ in event_log(database_url, tenancy.tenant_id)]


def test_a_user_binds_a_bounded_number_of_devices(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        devices = [
            bind_device(client, tokens["access_token"], DeviceKey("ed25519"))
            for _ in range(DEVICES_PER_USER_MAX)
        ]
        one_more = client.post(
            "/v1/me/devices",
            json={
                "name": "X",
                "algorithm": "ed25519",
                "public_key": DeviceKey("ed25519").public_key(),
                "password": PASSWORD,
            },
            headers=bearer(tokens["access_token"]),
        )
        client.post(
            f"/v1/me/devices/{devices[0]['id']}/revoke", headers=bearer(tokens["access_token"])
        )
        after_revoking = client.post(
            "/v1/me/devices",
            json={
                "name": "X",
                "algorithm": "ed25519",
                "public_key": DeviceKey("ed25519").public_key(),
                "password": PASSWORD,
            },
            headers=bearer(tokens["access_token"]),
        )
    assert_problem(one_more, 409, "user_limit_reached")
    assert after_revoking.status_code == 201

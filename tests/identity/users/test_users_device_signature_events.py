"""A refused device signature on a request whose access token is valid is a security
event (``device_signature.failed``, with why): a valid access token with a bad device
signature is what a stolen token looks like."""

from __future__ import annotations

from fastapi.testclient import TestClient

from billfold.identity.users.devices import DEVICE_CLOCK_SKEW_S
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.users_support import (
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


def _post(
    client: TestClient,
    *,
    access_token: str,
    key: DeviceKey,
    device_id: str,
    clock: ManualClock,
    nonce: str | None = None,
    skew_s: int = 0,
    tampered: bool = False,
) -> tuple[int, str]:
    body = b'{"amount": 100}'
    headers = key.headers(
        device_id=device_id,
        method="POST",
        target=TARGET,
        body=body,
        timestamp_s=clock.now_ns() // NANOSECONDS_PER_SECOND + skew_s,
        nonce=nonce,
    )
    response = client.post(
        TARGET,
        content=b'{"amount": 999}' if tampered else body,
        headers={**bearer(access_token), **headers, "Content-Type": "application/json"},
    )
    code = response.json().get("code", "") if response.status_code != 200 else ""
    return response.status_code, code


def test_refused_device_signatures_are_recorded_with_why(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key = DeviceKey("ed25519")
    with users_client(database_url, users_config(clock)) as client:
        ann = signed_in(client, tenancy)
        token = ann["access_token"]
        device = bind_device(client, token, key)
        sign = {"access_token": token, "key": key, "device_id": device["id"], "clock": clock}
        answers = [
            _post(client, **sign, nonce="n" * 20),  # accepted
            _post(client, **sign, nonce="n" * 20),  # the same nonce again: a replay
            _post(client, **sign, tampered=True),
            _post(client, **sign, skew_s=DEVICE_CLOCK_SKEW_S + 1),
            _post(client, **{**sign, "key": DeviceKey("ed25519")}),  # another key
        ]
        client.post(f"/v1/me/devices/{device['id']}/revoke", headers=bearer(token))
        answers.append(_post(client, **sign))
        # A request without a valid access token records nothing: nobody to file it under.
        stranger = client.post(TARGET, headers=bearer("bfu_at_" + "A" * 43))
    assert answers[0] == (200, "")
    assert answers[1:] == [(401, "device_signature_invalid")] * 5
    assert_problem(stranger, 401, "unauthorized")
    failed = [
        (d["reason"], d["device_id"])
        for t, d in event_log(database_url, tenancy.tenant_id)
        if t == "device_signature.failed"
    ]
    assert failed == [
        ("replayed_nonce", device["id"]),
        ("bad_signature", device["id"]),
        ("stale_timestamp", device["id"]),
        ("bad_signature", device["id"]),
        ("inactive_device", device["id"]),
    ]

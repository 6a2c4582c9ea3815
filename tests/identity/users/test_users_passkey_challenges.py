"""A WebAuthn challenge is single-use whatever the outcome (WebAuthn Level 3, section
13.4.3): a failed assertion or registration closes it, so a retry against the same
challenge is refused, and fresh options work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from identity.users.software_authenticator import SoftwareAuthenticator
from identity.users.users_support import (
    ORIGIN,
    PASSWORD,
    RELYING_PARTY,
    Tenancy,
    assert_problem,
    bearer,
    event_log,
    log_in,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

Failing = Callable[[SoftwareAuthenticator, dict[str, Any]], dict[str, Any]]


def _phished(genuine: SoftwareAuthenticator, options: dict[str, Any]) -> dict[str, Any]:
    return genuine.get(options, origin="https://wallet.example.evil")


def _forged(genuine: SoftwareAuthenticator, options: dict[str, Any]) -> dict[str, Any]:
    forged = genuine.get(options)
    forged["response"]["signature"] = forged["response"]["authenticatorData"]
    return forged


def _stranger(_genuine: SoftwareAuthenticator, options: dict[str, Any]) -> dict[str, Any]:
    return SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN).get(options)


def _register(client: TestClient, access_token: str, authenticator: SoftwareAuthenticator) -> None:
    headers = bearer(access_token)
    options = client.post("/v1/me/passkeys/options", headers=headers).json()["options"]
    response = client.post(
        "/v1/me/passkeys",
        json={"name": "Laptop", "credential": authenticator.create(options), "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 201, response.text


def _passkey_options(client: TestClient, mfa_token: str) -> dict[str, Any]:
    response = client.post("/v1/sessions/mfa/passkey-options", json={"mfa_token": mfa_token})
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()["options"]
    return options


def _mfa_token(client: TestClient, tenancy: Tenancy) -> str:
    body = log_in(client, tenancy).json()
    assert body["status"] == "mfa_required", body
    token: str = body["mfa"]["mfa_token"]
    return token


@pytest.mark.parametrize("failing", [_phished, _forged, _stranger])
def test_a_failed_assertion_closes_its_challenge(database_url: str, failing: Failing) -> None:
    tenancy = new_tenancy(database_url)
    genuine = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        _register(client, tokens["access_token"], genuine)
        mfa_token = _mfa_token(client, tenancy)
        options = _passkey_options(client, mfa_token)
        failed = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": mfa_token, "passkey": failing(genuine, options)},
        )
        # The genuine authenticator answers the very same challenge: it was used already.
        retried = client.post(
            "/v1/sessions/mfa", json={"mfa_token": mfa_token, "passkey": genuine.get(options)}
        )
        fresh = client.post(
            "/v1/sessions/mfa",
            json={
                "mfa_token": mfa_token,
                "passkey": genuine.get(_passkey_options(client, mfa_token)),
            },
        )
    assert_problem(failed, 401, "invalid_credentials")
    assert_problem(retried, 401, "invalid_credentials")
    assert fresh.status_code == 200, fresh.text
    failures = [
        d["reason"] for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"
    ]
    assert failures == ["wrong_passkey", "wrong_passkey"]


def test_a_failed_registration_closes_its_challenge(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        options = client.post("/v1/me/passkeys/options", headers=headers).json()["options"]

        def register(credential: dict[str, Any]) -> Any:
            body = {"name": "Laptop", "credential": credential, "password": PASSWORD}
            return client.post("/v1/me/passkeys", json=body, headers=headers)

        failed = register(authenticator.create(options, origin="https://evil.example"))
        retried = register(authenticator.create(options))
        fresh_options = client.post("/v1/me/passkeys/options", headers=headers).json()["options"]
        fresh = register(authenticator.create(fresh_options))
    assert_problem(failed, 422, "passkey_rejected")
    assert_problem(retried, 422, "passkey_rejected")
    assert fresh.status_code == 201, fresh.text

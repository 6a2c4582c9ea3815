"""WebAuthn passkeys with a software authenticator: registration, then the second step of a
sign-in; single-use challenges, the signature counter, the origin."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from billfold.identity.users.mfa import WEBAUTHN_CHALLENGE_LIFETIME_NS
from billfold.identity.users.recovery_codes import RECOVERY_CODE_COUNT
from billfold.kit.clock import ManualClock
from identity.users.software_authenticator import SoftwareAuthenticator, b64url
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


def _register(
    client: TestClient, access_token: str, authenticator: SoftwareAuthenticator
) -> dict[str, Any]:
    headers = bearer(access_token)
    options = client.post("/v1/me/passkeys/options", headers=headers).json()["options"]
    credential = authenticator.create(options)
    response = client.post(
        "/v1/me/passkeys",
        json={"name": "Laptop", "credential": credential, "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _second_step_options(client: TestClient, tenancy: Tenancy) -> tuple[str, dict[str, Any]]:
    body = log_in(client, tenancy).json()
    assert body["status"] == "mfa_required", body
    mfa_token = body["mfa"]["mfa_token"]
    response = client.post("/v1/sessions/mfa/passkey-options", json={"mfa_token": mfa_token})
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()["options"]
    return mfa_token, options


def _sign_in_with(
    client: TestClient,
    tenancy: Tenancy,
    authenticator: SoftwareAuthenticator,
    *,
    sign_count: int | None = None,
) -> None:
    """A whole sign-in whose second step the authenticator answers; it must succeed."""
    mfa_token, options = _second_step_options(client, tenancy)
    answer = authenticator.get(options, sign_count=sign_count)
    ok = client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "passkey": answer})
    assert ok.status_code == 200, ok.text


def test_register_a_passkey_and_sign_in_with_it(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        options = client.post(
            "/v1/me/passkeys/options", headers=bearer(tokens["access_token"])
        ).json()["options"]
        registered = client.post(
            "/v1/me/passkeys",
            json={
                "name": "Laptop",
                "credential": authenticator.create(options),
                "password": PASSWORD,
            },
            headers=bearer(tokens["access_token"]),
        ).json()
        mfa_token, auth_options = _second_step_options(client, tenancy)
        completed = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": mfa_token, "passkey": authenticator.get(auth_options)},
        )
        listed = client.get("/v1/me/passkeys", headers=bearer(completed.json()["access_token"]))
    assert options["rp"] == {"id": "wallet.example", "name": "Example Wallet"}
    assert options["user"]["name"] == "ann@example.com"
    assert registered["passkey"]["name"] == "Laptop"
    assert registered["passkey"]["aaguid"] == "00000000-0000-0000-0000-000000000000"
    assert len(registered["recovery_codes"]) == RECOVERY_CODE_COUNT
    allowed = [item["id"] for item in auth_options["allowCredentials"]]
    assert allowed == [b64url(authenticator.credential_id)]
    assert completed.status_code == 200, completed.text
    assert [item["last_used_at"] is not None for item in listed.json()["items"]] == [True]
    events = event_log(database_url, tenancy.tenant_id)
    assert [t for t, _ in events if t == "passkey.registered"] == ["passkey.registered"]
    succeeded = [d["methods"] for t, d in events if t == "login.succeeded"]
    assert succeeded == ["password", "password+passkey"]


def test_a_challenge_answers_once_and_expires(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        _register(client, tokens["access_token"], authenticator)
        mfa_token, options = _second_step_options(client, tenancy)
        assertion = authenticator.get(options)
        first = client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "passkey": assertion})
        # The very same assertion, presented in a new sign-in: its challenge is spent.
        other_token, _ = _second_step_options(client, tenancy)
        replay = client.post(
            "/v1/sessions/mfa", json={"mfa_token": other_token, "passkey": assertion}
        )
        late_token, late_options = _second_step_options(client, tenancy)
        clock.advance(nanoseconds=WEBAUTHN_CHALLENGE_LIFETIME_NS)
        late = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": late_token, "passkey": authenticator.get(late_options)},
        )
    assert first.status_code == 200, first.text
    assert_problem(replay, 401, "invalid_credentials")
    assert_problem(late, 401, "invalid_credentials")


def test_the_signature_counter_must_grow(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        _register(client, tokens["access_token"], authenticator)
        for _ in range(2):
            _sign_in_with(client, tenancy, authenticator)
        # A clone of the authenticator, still at counter 2, answers a fresh challenge.
        mfa_token, options = _second_step_options(client, tenancy)
        cloned = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": mfa_token, "passkey": authenticator.get(options, sign_count=2)},
        )
        # A forged signature with an old counter is a bad signature, not a clone's.
        mfa_token, options = _second_step_options(client, tenancy)
        forged = authenticator.get(options, sign_count=1)
        forged["response"]["signature"] = authenticator.get(options)["response"]["signature"]
        forgery = client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "passkey": forged})
    assert_problem(cloned, 401, "invalid_credentials")
    assert_problem(forgery, 401, "invalid_credentials")
    failed = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"]
    # WebAuthn's signal of a possibly cloned authenticator has a reason of its own.
    assert [d["reason"] for d in failed] == ["passkey_counter_regressed", "wrong_passkey"]


def test_a_passkey_that_keeps_no_counter_signs_in_again_and_again(database_url: str) -> None:
    """Synced passkeys report a signature counter of 0 every time: 0 after 0 is no clone."""
    tenancy = new_tenancy(database_url)
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        _register(client, tokens["access_token"], authenticator)
        for _ in range(2):
            _sign_in_with(client, tenancy, authenticator, sign_count=0)


def test_a_forged_or_foreign_assertion_is_refused(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    genuine = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        _register(client, tokens["access_token"], genuine)
        mfa_token, options = _second_step_options(client, tenancy)
        phishing = genuine.get(options, origin="https://wallet.example.evil")
        forged = genuine.get(options)
        forged["response"]["signature"] = genuine.get(options)["response"]["authenticatorData"]
        stranger = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN).get(options)
        responses = [
            client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "passkey": passkey})
            for passkey in (phishing, forged, stranger)
        ]
        malformed = client.post(
            "/v1/sessions/mfa",
            json={
                "mfa_token": mfa_token,
                "passkey": {"id": "x", "rawId": "x", "type": "public-key"},
            },
        )
    for response in responses:
        assert_problem(response, 401, "invalid_credentials")
    assert_problem(malformed, 422, "validation_failed")


def test_registration_is_refused_from_another_origin_or_without_a_challenge(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        options = client.post("/v1/me/passkeys/options", headers=headers).json()["options"]
        wrong_origin = client.post(
            "/v1/me/passkeys",
            json={
                "name": "Evil",
                "credential": authenticator.create(options, origin="https://evil.example"),
                "password": PASSWORD,
            },
            headers=headers,
        )
        made_up = dict(options, challenge="A" * 43)
        no_challenge = client.post(
            "/v1/me/passkeys",
            json={
                "name": "Evil",
                "credential": authenticator.create(made_up),
                "password": PASSWORD,
            },
            headers=headers,
        )
        listed = client.get("/v1/me/passkeys", headers=headers).json()["items"]
        me = client.get("/v1/me", headers=headers).json()
    assert_problem(wrong_origin, 422, "passkey_rejected")
    assert_problem(no_challenge, 422, "passkey_rejected")
    assert listed == []
    assert me["mfa_methods"] == []

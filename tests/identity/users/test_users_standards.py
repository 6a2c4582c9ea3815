"""End-user routes against the standards an outside client codes to: every 401 names its
scheme (RFC 9110 section 15.5.2), P-256 device signatures in the fixed-width r || s form
that WebCrypto, JOSE and RFC 9421 produce, a signing scheme the OpenAPI document tells, and
step-up guesses bounded by the account lock (PSD2 RTS article 4(3)(b))."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from billfold.identity.users.lockout import LOCK_DURATION_NS, LOGIN_FAILURES_MAX
from billfold.identity.users.signatures import request_message
from billfold.identity.users.step_up import STEP_UP_ATTEMPTS_MAX
from billfold.identity.users.tokens import TokenKind, mint_token
from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.software_authenticator import b64url
from identity.users.users_support import (
    PASSWORD,
    DeviceKey,
    assert_problem,
    bearer,
    bind_device,
    event_log,
    log_in,
    new_tenancy,
    sign_up,
    signed_in,
    tokens_of,
    users_app,
    users_client,
    users_config,
)

TARGET = "/v1/me/devices/verify-signature"


def _raw_p256(key: DeviceKey, message: bytes) -> str:
    """The IEEE P1363 form of a P-256 signature: r and s, 32 bytes each, big-endian."""
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_every_refused_sign_in_step_names_its_scheme(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key)
        wrong_password = log_in(client, tenancy, password=PASSWORD + "!")
        tokens = tokens_of(log_in(client, tenancy))
        unknown_mfa = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": mint_token(TokenKind.MFA), "totp_code": "123456"},
        )
        unknown_refresh = client.post(
            "/v1/sessions/refresh", json={"refresh_token": mint_token(TokenKind.REFRESH)}
        )
        refresh = {"refresh_token": tokens["refresh_token"]}
        assert client.post("/v1/sessions/refresh", json=refresh).status_code == 200
        reused_refresh = client.post("/v1/sessions/refresh", json=refresh)
    for response, code in (
        (wrong_password, "invalid_credentials"),
        (unknown_mfa, "mfa_token_invalid"),
        (unknown_refresh, "refresh_token_invalid"),
        (reused_refresh, "refresh_token_invalid"),
    ):
        assert_problem(response, 401, code)
        assert response.headers["www-authenticate"] == 'Bearer realm="billfold-users"', code


def test_a_p256_device_may_sign_in_the_fixed_width_form(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key = DeviceKey("p256")
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        device = bind_device(client, tokens["access_token"], key)
        timestamp = str(clock.now_ns() // NANOSECONDS_PER_SECOND)
        body = b'{"amount": 100}'

        def post(nonce: str, sign: bool = True, tamper: bool = False) -> tuple[int, str]:
            message = request_message(
                device_id=device["id"],
                method="POST",
                target=TARGET,
                timestamp=timestamp,
                nonce=nonce,
                body=b"{}" if tamper else body,
            )
            signature = _raw_p256(key, message) if sign else b64url(bytes(64))
            response = client.post(
                TARGET,
                content=body,
                headers={
                    **bearer(tokens["access_token"]),
                    "Content-Type": "application/json",
                    "Billfold-Device-Id": device["id"],
                    "Billfold-Device-Timestamp": timestamp,
                    "Billfold-Device-Nonce": nonce,
                    "Billfold-Device-Signature": signature,
                },
            )
            return response.status_code, response.json().get("code", "")

        accepted = post("raw-form-nonce-0001")
        replayed = post("raw-form-nonce-0001")
        zeros = post("raw-form-nonce-0002", sign=False)
        tampered = post("raw-form-nonce-0003", tamper=True)
    assert accepted == (200, "")
    for refused in (replayed, zeros, tampered):
        assert refused == (401, "device_signature_invalid")


def test_a_p256_step_up_answer_may_be_signed_in_the_fixed_width_form(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    key = DeviceKey("p256")
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        device = bind_device(client, tokens["access_token"], key)
        challenge = client.post(
            "/v1/me/step-up",
            json={
                "amount": 12_500,
                "currency": "EUR",
                "payee": "usr_payee",
                "method": "device",
                "device_id": device["id"],
            },
            headers=headers,
        ).json()
        message = challenge["message_to_sign"].encode()
        answer = client.post(
            f"/v1/me/step-up/{challenge['id']}/answer",
            json={"signature": _raw_p256(key, message)},
            headers=headers,
        )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "needle",
    [
        "Billfold-Device-Id",
        "Billfold-Device-Timestamp",
        "Billfold-Device-Nonce",
        "Billfold-Device-Signature",
        "billfold-device-request-v1",
        "SHA-256",
        "120",
        "r || s",
    ],
)
def test_the_openapi_document_tells_a_client_how_to_sign(needle: str) -> None:
    app = users_app("sqlite+aiosqlite:///:memory:", users_config())
    operation = app.openapi()["paths"][TARGET]["post"]
    assert needle in operation["description"]


def test_wrong_step_up_answers_lock_the_account_like_wrong_sign_ins(database_url: str) -> None:
    """PSD2 RTS article 4(3)(b): at most five failed authentications in a row, then the
    action is blocked for a while, however many challenges are opened."""
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    action = {"amount": 12_500, "currency": "EUR", "payee": "usr_payee", "method": "totp"}
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        secret = client.post("/v1/me/mfa/totp", headers=headers).json()["secret"]
        now_s = clock.now_ns() // NANOSECONDS_PER_SECOND
        confirm = {"code": totp_code(secret, at_s=now_s), "password": PASSWORD}
        assert client.post("/v1/me/mfa/totp/confirm", json=confirm, headers=headers).is_success
        clock.advance(seconds=30)

        def answer(code: str) -> int:
            challenge = client.post("/v1/me/step-up", json=action, headers=headers).json()
            response = client.post(
                f"/v1/me/step-up/{challenge['id']}/answer",
                json={"totp_code": code},
                headers=headers,
            )
            return response.status_code

        def wrong_code() -> str:
            now_s = clock.now_ns() // NANOSECONDS_PER_SECOND
            near = {totp_code(secret, at_s=now_s + 30 * step) for step in (-1, 0, 1)}
            return next(code for code in ("000000", "111111", "222222") if code not in near)

        wrong = [answer(wrong_code()) for _ in range(LOGIN_FAILURES_MAX)]
        right = answer(totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND))
        password_while_locked = log_in(client, tenancy)
        clock.advance(nanoseconds=LOCK_DURATION_NS)
        refresh = {"refresh_token": tokens["refresh_token"]}
        fresh = client.post("/v1/sessions/refresh", json=refresh).json()
        headers.update(bearer(fresh["access_token"]))  # the first one lived 15 minutes
        after_the_lock = answer(totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND))
    assert LOGIN_FAILURES_MAX > STEP_UP_ATTEMPTS_MAX  # the lock spans several challenges
    assert wrong == [403] * LOGIN_FAILURES_MAX
    assert right == 403
    assert_problem(password_while_locked, 401, "invalid_credentials")
    assert after_the_lock == 200
    reasons = [
        detail["reason"]
        for event_type, detail in event_log(database_url, tenancy.tenant_id)
        if event_type == "step_up.failed"
    ]
    assert reasons == ["wrong_answer"] * LOGIN_FAILURES_MAX + ["locked"]

"""The SDK for the tenant's backend (API keys, end users) and for the end user themself
(sign-in with a second factor, rotating tokens, sessions, TOTP, recovery codes, passkeys,
devices and device-signed requests, step-up), against the real application."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from billfold.client import (
    AuthenticationError,
    Billfold,
    BillfoldUser,
    ConflictError,
    DeviceSigner,
    NotFoundError,
    NotSignedInError,
    PermissionDeniedError,
    RefreshTokenInvalidError,
)
from billfold.client.types import Tokens
from billfold.identity.types import Scope
from client.sdk_support import BASE_URL, USER_PASSWORD, Server, running, unique_email
from identity.users.software_authenticator import SoftwareAuthenticator
from identity.users.users_support import ORIGIN, RELYING_PARTY

TOTP_STEP_S = 30


def _sign_up(server: Server) -> str:
    with server.billfold([Scope.USERS_ADMIN]) as backend:
        email = unique_email()
        backend.users.create(email=email, password=USER_PASSWORD)
    return email


def _totp_code(server: Server, secret: str) -> str:
    server.clock.advance(seconds=TOTP_STEP_S)  # a code is accepted once: move to the next
    return str(pyotp.TOTP(secret).at(int(server.now_s())))


def _enrol_totp(server: Server, user: BillfoldUser) -> tuple[str, list[str]]:
    enrolment = user.me.mfa.begin_totp()
    assert enrolment["digits"] == 6 and enrolment["period_s"] == TOTP_STEP_S
    codes = user.me.mfa.confirm_totp(
        code=_totp_code(server, enrolment["secret"]), password=USER_PASSWORD
    )
    assert codes["recovery_codes"] is not None
    return enrolment["secret"], codes["recovery_codes"]


def test_the_backend_manages_api_keys_and_users(database_url: str) -> None:
    with running(database_url) as server:
        with server.billfold([Scope.TENANT_ADMIN, Scope.USERS_ADMIN]) as backend:
            created = backend.api_keys.create(name="payouts", scopes=["ledger:read"])
            assert created["secret"].startswith("bf_test_")
            assert created["scopes"] == ["ledger:read"]
            assert backend.api_keys.get(created["id"])["name"] == "payouts"
            listed = [key["id"] for key in backend.api_keys.iterate(limit=1)]
            assert created["id"] in listed and len(listed) == 3  # with the bootstrap key and ours
            assert backend.api_keys.list(limit=1)["next_cursor"] is not None
            revoked = backend.api_keys.revoke(created["id"])
            assert revoked["revoked_at"] is not None

            ann = backend.users.create(email="ann@example.com", password=USER_PASSWORD)
            bob = backend.users.create(phone="+14155550123", handle="bob", password=USER_PASSWORD)
            assert (ann["email"], ann["mode"], ann["status"]) == (
                "ann@example.com",
                "test",
                "active",
            )
            assert (bob["phone"], bob["handle"]) == ("+14155550123", "bob")
            assert backend.users.get(bob["id"])["handle"] == "bob"
            found = backend.users.list(identifier="ann@example.com")["items"]
            assert [user["id"] for user in found] == [ann["id"]]
            assert [user["id"] for user in backend.users.iterate(limit=1)] == [ann["id"], bob["id"]]
            assert backend.users.revoke_sessions(ann["id"]) == {"revoked": 0}
            with pytest.raises(ConflictError) as taken:
                backend.users.create(email="ann@example.com", password=USER_PASSWORD)
            assert taken.value.code == "identifier_taken"
            with pytest.raises(ValueError, match="at least one"):
                backend.users.create(password=USER_PASSWORD)
        with server.billfold([Scope.LEDGER_READ]) as reader, pytest.raises(PermissionDeniedError):
            reader.users.get(ann["id"])
        revoked_key = Billfold(
            api_key=created["secret"], base_url=BASE_URL, http_transport=server.transport()
        )
        with revoked_key, pytest.raises(AuthenticationError):
            revoked_key.accounts.list()


def test_sign_in_with_a_totp_second_step_and_automatic_refresh(database_url: str) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        with server.user() as user:
            with pytest.raises(NotSignedInError):
                user.me()
            first = user.sign_in(identifier=email, password=USER_PASSWORD)
            assert first["status"] == "authenticated"
            assert user.me()["email"] == email
            assert user.me.get() == user.me()
            secret, recovery_codes = _enrol_totp(server, user)
            assert len(recovery_codes) == 10
            assert sorted(user.me()["mfa_methods"]) == ["recovery_code", "totp"]

        saved: list[Tokens] = []
        with server.user(on_tokens=saved.append) as user:
            answer = user.sign_in(identifier=email, password=USER_PASSWORD)
            assert answer["status"] == "mfa_required"
            assert answer["mfa"] is not None and "totp" in answer["mfa"]["methods"]
            assert user.tokens is None
            tokens = user.complete_mfa(totp_code=_totp_code(server, secret))
            assert saved == [tokens]
            assert user.me()["email"] == email

            # Past the access token's 15 minutes, the next call refreshes first.
            server.clock.advance(seconds=16 * 60)
            sessions = user.me.sessions.list()["items"]
            current = [session["id"] for session in sessions if session["current"]]
            assert current == [tokens["session_id"]]  # the first client's session is listed too
            assert len(saved) == 2
            assert saved[1]["access_token"] != tokens["access_token"]
            assert saved[1]["refresh_token"] != tokens["refresh_token"]
            assert saved[1]["session_id"] == tokens["session_id"]

        with server.user() as user:
            server.clock.advance(seconds=TOTP_STEP_S)
            code = str(pyotp.TOTP(secret).at(int(server.now_s())))
            one_call = user.sign_in(identifier=email, password=USER_PASSWORD, totp=lambda: code)
            assert one_call["status"] == "authenticated"
            assert user.me()["email"] == email


def test_a_refused_access_token_is_refreshed_once_and_the_call_retried(
    database_url: str,
) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        # A client whose clock lags by an hour never refreshes ahead: the server's 401 does it.
        with server.user(clock=lambda: server.now_s() - 3600) as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            before = user.tokens
            server.clock.advance(seconds=16 * 60)
            assert user.me()["email"] == email
            after = user.tokens
            assert before is not None and after is not None
            assert after["access_token"] != before["access_token"]
            # A 401 that no new token cures (a wrong password) is raised as it is.
            with pytest.raises(AuthenticationError) as wrong:
                user.me.mfa.regenerate_recovery_codes(password="not the password")
            assert wrong.value.code == "invalid_credentials"
            assert user.tokens == after


def test_a_reused_refresh_token_is_a_typed_error_and_ends_the_session(
    database_url: str,
) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        with server.user() as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            assert user.tokens is not None
            spent = user.tokens["refresh_token"]
            rotated = user.refresh()
            assert rotated["refresh_token"] != spent
            # Someone replays the spent token: the server takes it for theft.
            with server.user(refresh_token=spent) as thief:
                with pytest.raises(RefreshTokenInvalidError) as reused:
                    thief.me()
                assert reused.value.status == 401
                assert reused.value.code == "refresh_token_invalid"
                assert thief.tokens is None
            # The session is over for the legitimate holder too: sign in again.
            with pytest.raises(RefreshTokenInvalidError):
                user.me()
            assert user.tokens is None
            with pytest.raises(NotSignedInError):
                user.me()
            user.sign_in(identifier=email, password=USER_PASSWORD)
            assert user.me()["email"] == email


def test_recovery_codes_passkeys_and_sessions(database_url: str) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
        with server.user() as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            options = user.me.passkeys.registration_options()["options"]
            with pytest.raises(AuthenticationError) as wrong_password:
                user.me.passkeys.register(
                    name="Laptop",
                    credential=authenticator.create(options),
                    password=USER_PASSWORD + "!",
                )
            assert wrong_password.value.code == "invalid_credentials"
            options = user.me.passkeys.registration_options()["options"]
            registered = user.me.passkeys.register(
                name="Laptop", credential=authenticator.create(options), password=USER_PASSWORD
            )
            assert registered["passkey"]["name"] == "Laptop"
            assert registered["recovery_codes"] is not None
            assert [key["name"] for key in user.me.passkeys.list()["items"]] == ["Laptop"]
            fresh = user.me.mfa.regenerate_recovery_codes(password=USER_PASSWORD)
            assert fresh["recovery_codes"] is not None
            assert set(fresh["recovery_codes"]).isdisjoint(registered["recovery_codes"])
            user.log_out()

        with server.user() as by_passkey:
            assert by_passkey.sign_in(identifier=email, password=USER_PASSWORD)["mfa"]
            assertion = authenticator.get(by_passkey.mfa_passkey_options()["options"])
            by_passkey.complete_mfa(passkey=assertion)
            assert sorted(by_passkey.me()["mfa_methods"]) == ["passkey", "recovery_code"]

            with server.user() as by_code:
                by_code.sign_in(identifier=email, password=USER_PASSWORD)
                by_code.complete_mfa(recovery_code=fresh["recovery_codes"][0])
                sessions = by_code.me.sessions.list()["items"]
                assert len(sessions) == 2
                other = next(session for session in sessions if not session["current"])
                assert by_passkey.tokens is not None
                assert other["id"] == by_passkey.tokens["session_id"]
                assert by_code.me.sessions.revoke(other["id"]) == {"revoked": 1}
                with pytest.raises(NotFoundError) as missing:
                    by_code.me.sessions.revoke(f"ses_{uuid.uuid4().hex}")
                assert missing.value.code == "session_not_found"
                by_code.log_out()
            # by_passkey's session was the one revoked: its refresh is refused as well.
            with pytest.raises(RefreshTokenInvalidError):
                by_passkey.me()

        with server.user() as user, server.user() as second:
            for client in (user, second):
                client.sign_in(identifier=email, password=USER_PASSWORD)
                assert client.mfa_token is not None
                client.complete_mfa(recovery_code=fresh["recovery_codes"][1 + (client is second)])
            assert user.me.sessions.revoke_all()["revoked"] == 2
            with pytest.raises(RefreshTokenInvalidError):
                second.me()
            user.sign_in(identifier=email, password=USER_PASSWORD)
            assertion = authenticator.get(user.mfa_passkey_options()["options"])
            user.complete_mfa(passkey=assertion)
            user.log_out()
            assert user.tokens is None
            with pytest.raises(NotSignedInError):
                user.complete_mfa(totp_code="123456")
            with pytest.raises(ValueError, match="exactly one"):
                user.complete_mfa()


@pytest.mark.parametrize("algorithm", ["ed25519", "p256"])
def test_device_signed_requests_and_a_device_step_up(database_url: str, algorithm: str) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        key = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "ed25519"
            else ec.generate_private_key(ec.SECP256R1())
        )
        signer = DeviceSigner(key, clock=server.now_s)
        with server.user() as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            with pytest.raises(ValueError, match="bind the device"):
                user.me.devices.verify_signature(signer)
            thief = DeviceSigner(ed25519.Ed25519PrivateKey.generate(), clock=server.now_s)
            with pytest.raises(AuthenticationError) as wrong_password:
                user.me.devices.bind(name="Thief", signer=thief, password=USER_PASSWORD + "!")
            assert wrong_password.value.code == "invalid_credentials"
            assert thief.device_id is None
            device = user.me.devices.bind(name="Phone", signer=signer, password=USER_PASSWORD)
            assert device["algorithm"] == algorithm
            assert signer.device_id == device["id"]
            assert [item["id"] for item in user.me.devices.list()["items"]] == [device["id"]]
            verified = user.me.devices.verify_signature(signer)
            assert verified == {"device_id": device["id"], "verified": True}
            # Each attempt is signed afresh: the same nonce twice would be refused.
            assert user.me.devices.verify_signature(signer)["verified"] is True

            impostor = DeviceSigner(
                ed25519.Ed25519PrivateKey.generate(), device_id=device["id"], clock=server.now_s
            )
            tokens = user.tokens
            with pytest.raises(AuthenticationError) as refused:
                user.me.devices.verify_signature(impostor)
            assert refused.value.code == "device_signature_invalid"
            assert user.tokens == tokens  # a bad signature is not cured by a refresh

            challenge = user.me.step_up.begin(
                amount=12_500,
                currency="USD",
                payee="acc_merchant",
                method="device",
                device_id=device["id"],
            )
            assert challenge["message_to_sign"] is not None
            granted = user.me.step_up.answer(
                challenge["id"], signature=signer.sign_step_up(challenge)
            )
            assert granted["step_up_token"].startswith("bfu_su_")
            with pytest.raises(ValueError, match="exactly one"):
                user.me.step_up.answer(challenge["id"])

            assert user.me.devices.revoke(device["id"])["revoked_at"] is not None
            with pytest.raises(AuthenticationError):
                user.me.devices.verify_signature(signer)
    with pytest.raises(ValueError, match="P-256"):
        DeviceSigner(ec.generate_private_key(ec.SECP384R1()))


def test_a_totp_step_up(database_url: str) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        with server.user() as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            secret, _ = _enrol_totp(server, user)
            challenge = user.me.step_up.begin(
                amount=100, currency="EUR", payee="usr_friend", method="totp"
            )
            assert challenge["method"] == "totp" and challenge["message_to_sign"] is None
            granted = user.me.step_up.answer(challenge["id"], totp_code=_totp_code(server, secret))
            assert granted["step_up_token"]
            with pytest.raises(ConflictError):
                user.me.mfa.begin_totp()


def test_threads_sharing_a_client_spend_the_refresh_token_once(database_url: str) -> None:
    with running(database_url) as server:
        email = _sign_up(server)
        saved: list[Tokens] = []
        with server.user(on_tokens=saved.append) as user:
            user.sign_in(identifier=email, password=USER_PASSWORD)
            server.clock.advance(seconds=16 * 60)
            with ThreadPoolExecutor(max_workers=4) as pool:
                emails = list(pool.map(lambda _: user.me()["email"], range(8)))
            assert emails == [email] * 8
            assert len(saved) == 2  # the sign-in's pair, then exactly one refresh
            assert user.tokens == saved[1]

"""TOTP (RFC 6238): the appendix B vectors, the ±1 step window, replay refusal, enrolment,
two-step sign-in, and recovery codes."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.users.lockout import LOGIN_FAILURES_MAX
from billfold.identity.users.recovery_codes import RECOVERY_CODE_COUNT
from billfold.identity.users.service import MFA_TICKET_ATTEMPTS_MAX
from billfold.identity.users.totp import matching_step, new_totp_secret, totp_code, totp_step
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.ids import parse_id
from cli_support import billfold
from identity.identity_support import run_in_unit_of_work
from identity.users.users_support import (
    MASTER_KEY,
    PASSWORD,
    Tenancy,
    assert_problem,
    bearer,
    enrol_totp,
    event_log,
    log_in,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

# RFC 6238 appendix B: the seeds are these ASCII strings (20, 32 and 64 bytes).
_SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at_s", "sha1", "sha256", "sha512"), _VECTORS)
def test_the_rfc_6238_appendix_b_vectors(at_s: int, sha1: str, sha256: str, sha512: str) -> None:
    for algorithm, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        secret = base64.b32encode(_SEEDS[algorithm]).decode("ascii")
        code = totp_code(secret, at_s=at_s, digits=8, algorithm=algorithm)  # type: ignore[arg-type]
        assert code == expected, (at_s, algorithm)


def test_a_code_is_accepted_one_step_either_side_and_never_twice() -> None:
    secret = new_totp_secret()
    now_s = 1_700_000_015
    step = totp_step(now_s)
    previous, current, following = (
        totp_code(secret, at_s=(step + offset) * 30) for offset in (-1, 0, 1)
    )
    too_old = totp_code(secret, at_s=(step - 2) * 30)
    assert matching_step(secret, code=current, at_s=now_s, after_step=None) == step
    assert matching_step(secret, code=previous, at_s=now_s, after_step=None) == step - 1
    assert matching_step(secret, code=following, at_s=now_s, after_step=None) == step + 1
    assert matching_step(secret, code=too_old, at_s=now_s, after_step=None) is None
    # After the current step was used, it and anything older is a replay.
    assert matching_step(secret, code=current, at_s=now_s, after_step=step) is None
    assert matching_step(secret, code=previous, at_s=now_s, after_step=step) is None
    assert matching_step(secret, code=following, at_s=now_s, after_step=step) == step + 1
    for malformed in ("", "12345", "1234567", "12345a", "١٢٣٤٥٦"):
        assert matching_step(secret, code=malformed, at_s=now_s, after_step=None) is None


def _now_s(clock: ManualClock) -> int:
    return clock.now_ns() // NANOSECONDS_PER_SECOND


def _mfa_token(client: TestClient, tenancy: Tenancy) -> dict[str, object]:
    response = log_in(client, tenancy)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "mfa_required"
    assert body["tokens"] is None
    mfa: dict[str, object] = body["mfa"]
    return mfa


def test_enrolment_then_a_two_step_sign_in_with_totp(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        unstarted = client.post(
            "/v1/me/mfa/totp/confirm",
            json={"code": "000000", "password": PASSWORD},
            headers=headers,
        )
        client.post("/v1/me/mfa/totp", headers=headers)
        wrong = client.post(
            "/v1/me/mfa/totp/confirm",
            json={"code": "000000", "password": PASSWORD},
            headers=headers,
        )
        secret, codes = enrol_totp(client, tokens["access_token"], clock)
        again = client.post("/v1/me/mfa/totp", headers=bearer(tokens["access_token"]))
        mfa = _mfa_token(client, tenancy)
        code = totp_code(secret, at_s=_now_s(clock))
        completed = client.post(
            "/v1/sessions/mfa", json={"mfa_token": mfa["mfa_token"], "totp_code": code}
        )
        me = client.get("/v1/me", headers=bearer(completed.json()["access_token"])).json()
        # The same code, at once, in a new sign-in: a replay.
        replay = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": _mfa_token(client, tenancy)["mfa_token"], "totp_code": code},
        )
    assert_problem(unstarted, 409, "factor_state_conflict")
    assert_problem(wrong, 422, "invalid_code")
    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    assert_problem(again, 409, "factor_state_conflict")
    assert mfa["methods"] == ["totp", "recovery_code"]
    assert str(mfa["mfa_token"]).startswith("bfu_mfa_")
    assert completed.status_code == 200, completed.text
    assert me["mfa_methods"] == ["totp", "recovery_code"]
    assert_problem(replay, 401, "invalid_credentials")
    events = event_log(database_url, tenancy.tenant_id)
    enrolled = [d["factor"] for t, d in events if t == "mfa.enrolled"]
    assert enrolled == ["totp", "recovery_codes"]
    succeeded = [d["methods"] for t, d in events if t == "login.succeeded"]
    assert succeeded == ["password", "password+totp"]
    assert [d["reason"] for t, d in events if t == "mfa.failed"] == ["wrong_totp"]


def test_a_recovery_code_works_once(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        _secret, codes = enrol_totp(client, tokens["access_token"], clock)
        typed = codes[3].upper().replace("-", " ")  # case and separators do not matter
        first = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": _mfa_token(client, tenancy)["mfa_token"], "recovery_code": typed},
        )
        second = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": _mfa_token(client, tenancy)["mfa_token"], "recovery_code": codes[3]},
        )
        another = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": _mfa_token(client, tenancy)["mfa_token"], "recovery_code": codes[4]},
        )
    assert first.status_code == 200, first.text
    assert_problem(second, 401, "invalid_credentials")
    assert another.status_code == 200
    events = event_log(database_url, tenancy.tenant_id)
    used = [d["remaining"] for t, d in events if t == "mfa.recovery_code_used"]
    assert used == [RECOVERY_CODE_COUNT - 1, RECOVERY_CODE_COUNT - 2]
    assert [d["reason"] for t, d in events if t == "mfa.failed"] == ["wrong_recovery_code"]


def test_recovery_codes_are_replaced_only_with_the_password(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        before_enrolment = client.post(
            "/v1/me/mfa/recovery-codes", json={"password": PASSWORD}, headers=headers
        )
        _secret, old_codes = enrol_totp(client, tokens["access_token"], clock)
        wrong = client.post(
            "/v1/me/mfa/recovery-codes", json={"password": "not the password"}, headers=headers
        )
        renewed = client.post(
            "/v1/me/mfa/recovery-codes", json={"password": PASSWORD}, headers=headers
        )
        with_old = client.post(
            "/v1/sessions/mfa",
            json={
                "mfa_token": _mfa_token(client, tenancy)["mfa_token"],
                "recovery_code": old_codes[0],
            },
        )
    assert_problem(before_enrolment, 409, "factor_state_conflict")
    assert_problem(wrong, 401, "invalid_credentials")
    new_codes = renewed.json()["recovery_codes"]
    assert len(new_codes) == RECOVERY_CODE_COUNT
    assert not set(new_codes) & set(old_codes)
    assert_problem(with_old, 401, "invalid_credentials")
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.failed"]
    assert [d["stage"] for d in failures] == ["reauthentication"]


def test_an_mfa_token_allows_few_attempts_and_wrong_codes_lock_the_account(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _codes = enrol_totp(client, tokens["access_token"], clock)
        mfa_token = _mfa_token(client, tenancy)["mfa_token"]
        wrong = [
            client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": "000000"})
            for _ in range(MFA_TICKET_ATTEMPTS_MAX)
        ]
        right_code = totp_code(secret, at_s=_now_s(clock))
        dead_ticket = client.post(
            "/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": right_code}
        )
        password_step = log_in(client, tenancy)
    assert MFA_TICKET_ATTEMPTS_MAX >= LOGIN_FAILURES_MAX
    for response in wrong:
        assert_problem(response, 401, "invalid_credentials")
    assert_problem(dead_ticket, 401, "mfa_token_invalid")
    assert_problem(password_step, 401, "invalid_credentials")  # locked by the MFA failures
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"]
    assert failures[LOGIN_FAILURES_MAX - 1]["locked"] is True


def test_signing_in_again_between_guesses_does_not_reset_the_count(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        enrol_totp(client, tokens["access_token"], clock)
        for _ in range(LOGIN_FAILURES_MAX):
            mfa_token = _mfa_token(client, tenancy)["mfa_token"]  # the password step passes
            guess = client.post(
                "/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": "000000"}
            )
            assert_problem(guess, 401, "invalid_credentials")
        password_step = log_in(client, tenancy)
    assert_problem(password_step, 401, "invalid_credentials")
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"]
    assert failures[-1]["locked"] is True


def test_the_second_step_refuses_malformed_requests(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        enrol_totp(client, tokens["access_token"], clock)
        mfa_token = _mfa_token(client, tenancy)["mfa_token"]
        two_answers = client.post(
            "/v1/sessions/mfa",
            json={"mfa_token": mfa_token, "totp_code": "123456", "recovery_code": "abcd"},
        )
        no_answer = client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token})
        access_as_mfa = client.post(
            "/v1/sessions/mfa", json={"mfa_token": tokens["access_token"], "totp_code": "123456"}
        )
        clock.advance(seconds=301)
        expired = client.post("/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": "1"})
    assert_problem(two_answers, 422, "validation_failed")
    assert_problem(no_answer, 422, "validation_failed")
    assert_problem(access_as_mfa, 401, "mfa_token_invalid")
    assert_problem(expired, 401, "mfa_token_invalid")


PLAIN = "ann@example.com"


def _user_id(access_token: str, client: TestClient) -> uuid.UUID:
    me = client.get("/v1/me", headers=bearer(access_token)).json()
    return parse_id("usr", me["id"])


def _totp_row(database_url: str, user_id: uuid.UUID) -> tuple[str | None, bytes | None]:
    async def read(session: AsyncSession) -> tuple[str | None, bytes | None]:
        raw = user_id.hex if session.get_bind().dialect.name == "sqlite" else user_id
        row = (
            await session.execute(
                text("SELECT secret, encrypted_secret FROM identity_user_totp WHERE user_id = :u"),
                {"u": raw},
            )
        ).one()
        return row[0], None if row[1] is None else bytes(row[1])

    return run_in_unit_of_work(database_url, read)


def _write_totp_row(
    database_url: str, user_id: uuid.UUID, *, secret: str | None, encrypted: bytes | None
) -> None:
    async def write(session: AsyncSession) -> None:
        raw = user_id.hex if session.get_bind().dialect.name == "sqlite" else user_id
        await session.execute(
            text(
                "UPDATE identity_user_totp SET secret = :s, encrypted_secret = :e"
                " WHERE user_id = :u"
            ),
            {"s": secret, "e": encrypted, "u": raw},
        )

    run_in_unit_of_work(database_url, write)


def _complete(client: TestClient, tenancy: Tenancy, code: str, identifier: str) -> int:
    mfa = log_in(client, tenancy, identifier=identifier).json()["mfa"]
    response = client.post(
        "/v1/sessions/mfa", json={"mfa_token": mfa["mfa_token"], "totp_code": code}
    )
    return response.status_code


def test_the_seed_is_encrypted_at_rest_and_bound_to_its_row(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        ann_tokens = signed_in(client, tenancy, email="ann@example.com")
        bob_tokens = signed_in(client, tenancy, email="bob@example.com")
        ann_secret, _ = enrol_totp(client, ann_tokens["access_token"], clock)
        bob_secret, _ = enrol_totp(client, bob_tokens["access_token"], clock)
        ann_id = _user_id(ann_tokens["access_token"], client)
        bob_id = _user_id(bob_tokens["access_token"], client)

        clear, sealed = _totp_row(database_url, ann_id)
        assert clear is None and sealed is not None
        assert ann_secret.encode() not in sealed
        assert base64.b32decode(ann_secret) not in sealed
        assert re.search(rb"[A-Z2-7]{16}", sealed) is None  # no base32 seed, whole or part

        ann_code = totp_code(ann_secret, at_s=_now_s(clock))
        assert _complete(client, tenancy, ann_code, "ann@example.com") == 200

        # Ann's sealed seed copied into Bob's row decrypts for neither code there.
        _write_totp_row(database_url, bob_id, secret=None, encrypted=sealed)
        clock.advance(seconds=30)
        ann_code = totp_code(ann_secret, at_s=_now_s(clock))
        bob_code = totp_code(bob_secret, at_s=_now_s(clock))
        assert _complete(client, tenancy, ann_code, "bob@example.com") == 401
        assert _complete(client, tenancy, bob_code, "bob@example.com") == 401


def test_a_seed_stored_in_the_clear_before_0014_is_sealed_at_its_next_use(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        user_id = _user_id(tokens["access_token"], client)
        _write_totp_row(database_url, user_id, secret=secret, encrypted=None)  # as before 0014
        assert _complete(client, tenancy, totp_code(secret, at_s=_now_s(clock)), PLAIN) == 200
        clear, sealed = _totp_row(database_url, user_id)
        assert clear is None and sealed is not None and secret.encode() not in sealed
        clock.advance(seconds=30)
        assert _complete(client, tenancy, totp_code(secret, at_s=_now_s(clock)), PLAIN) == 200


def test_clear_seeds_are_sealed_by_the_command(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        user_id = _user_id(tokens["access_token"], client)
        _write_totp_row(database_url, user_id, secret=secret, encrypted=None)
        ran = billfold(
            "keys",
            "seal-totp-seeds",
            environment={"BILLFOLD_DATABASE_URL": database_url, "BILLFOLD_MASTER_KEY": MASTER_KEY},
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert re.search(r"sealed +[1-9][0-9]* TOTP seeds", ran.stdout)
        clear, sealed = _totp_row(database_url, user_id)
        assert clear is None and sealed is not None
        assert _complete(client, tenancy, totp_code(secret, at_s=_now_s(clock)), PLAIN) == 200

"""Step-up authentication with PSD2 dynamic linking: the token is bound to exactly the
amount, currency and payee; changing any invalidates it; it is single use and expires."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from billfold.identity.users.errors import StepUpRejected
from billfold.identity.users.step_up import (
    STEP_UP_ATTEMPTS_MAX,
    STEP_UP_CHALLENGE_LIFETIME_NS,
    STEP_UP_TOKEN_LIFETIME_NS,
    verify_step_up,
)
from billfold.identity.users.totp import totp_code
from billfold.identity.users.work import run_recording_failures
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from identity.users.users_support import (
    DeviceKey,
    assert_problem,
    bearer,
    bind_device,
    enrol_totp,
    event_log,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

PAYEE = "iban:DE89370400440532013000"
ACTION: dict[str, Any] = {"amount": 12_500, "currency": "EUR", "payee": PAYEE}


def _verify(
    database_url: str, *, user_id: uuid.UUID, token: str, now_ns: int, **changes: Any
) -> str | None:
    """What another domain does: verify inside its unit of work, record any refusal after.
    None when accepted, else the refusal's detail."""
    action = {**ACTION, **changes}

    async def run() -> str | None:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            await run_recording_failures(
                UnitOfWork(engine),
                lambda session: verify_step_up(
                    session, user_id=user_id, token=token, now_ns=now_ns, **action
                ),
            )
        except StepUpRejected as error:
            return error.detail or "rejected"
        finally:
            await engine.dispose()
        return None

    return asyncio.run(run())


def _user_id(client: TestClient, access_token: str) -> uuid.UUID:
    return uuid.UUID(client.get("/v1/me", headers=bearer(access_token)).json()["id"][4:])


def _totp_step_up(
    client: TestClient, access_token: str, secret: str, clock: ManualClock, **action: Any
) -> dict[str, Any]:
    headers = bearer(access_token)
    challenge = client.post(
        "/v1/me/step-up", json={**ACTION, **action, "method": "totp"}, headers=headers
    )
    assert challenge.status_code == 201, challenge.text
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    clock.advance(seconds=30)  # each answer needs a fresh time step
    answer = client.post(
        f"/v1/me/step-up/{challenge.json()['id']}/answer", json={"totp_code": code}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize(
    "change",
    [{"amount": 12_501}, {"payee": "iban:GB33BUKB20201555555555"}, {"currency": "USD"}],
    ids=["amount", "payee", "currency"],
)
def test_a_step_up_token_is_bound_to_amount_currency_and_payee(
    database_url: str, change: dict[str, Any]
) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        user_id = _user_id(client, tokens["access_token"])
        issued = _totp_step_up(client, tokens["access_token"], secret, clock)
    token, now_ns = issued["step_up_token"], clock.now_ns()
    assert token.startswith("bfu_su_")
    changed = _verify(database_url, user_id=user_id, token=token, now_ns=now_ns, **change)
    # The mismatch burnt the token: even the genuine action cannot use it now.
    genuine_after = _verify(database_url, user_id=user_id, token=token, now_ns=now_ns)
    assert changed is not None and "bound to another" in changed
    assert genuine_after is not None and "spent" in genuine_after
    events = event_log(database_url, tenancy.tenant_id)
    stages = [(t, d["stage"], d["reason"]) for t, d in events if t.startswith("step_up.")]
    assert stages == [
        ("step_up.issued", "issued", None),
        ("step_up.verified", "answer", None),
        ("step_up.failed", "verify", "mismatch"),
        ("step_up.failed", "verify", "spent"),
    ]


def test_a_step_up_token_is_single_use_and_expires(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        user_id = _user_id(client, tokens["access_token"])
        first = _totp_step_up(client, tokens["access_token"], secret, clock)
        second = _totp_step_up(client, tokens["access_token"], secret, clock)
        bob = signed_in(client, tenancy, email="bob@example.com")
        bob_id = _user_id(client, bob["access_token"])
    now_ns = clock.now_ns()
    assert (
        _verify(database_url, user_id=user_id, token=first["step_up_token"], now_ns=now_ns) is None
    )
    spent = _verify(database_url, user_id=user_id, token=first["step_up_token"], now_ns=now_ns)
    assert spent is not None and "spent" in spent
    not_bobs = _verify(database_url, user_id=bob_id, token=second["step_up_token"], now_ns=now_ns)
    assert not_bobs is not None
    late = now_ns + STEP_UP_TOKEN_LIFETIME_NS
    expired = _verify(database_url, user_id=user_id, token=second["step_up_token"], now_ns=late)
    assert expired is not None and "expired" in expired
    malformed = _verify(database_url, user_id=user_id, token="bfu_su_nope", now_ns=now_ns)
    assert malformed is not None
    events = event_log(database_url, tenancy.tenant_id)
    verified = [d["stage"] for t, d in events if t == "step_up.verified"]
    assert verified == ["answer", "answer", "verify"]
    failed = [d["reason"] for t, d in events if t == "step_up.failed"]
    assert failed == ["spent", "unknown_token", "unknown_token", "expired"]  # by time


def test_a_device_signs_the_amount_and_the_payee(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    key = DeviceKey("ed25519")
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        device = bind_device(client, tokens["access_token"], key)
        user_id = _user_id(client, tokens["access_token"])
        challenge = client.post(
            "/v1/me/step-up",
            json={**ACTION, "method": "device", "device_id": device["id"]},
            headers=headers,
        ).json()
        message = challenge["message_to_sign"]
        # A device tricked into signing another amount (or payee) does not answer this one.
        tampered = message.replace("\n12500\n", "\n99999\n").encode()
        wrong = client.post(
            f"/v1/me/step-up/{challenge['id']}/answer",
            json={"signature": key.sign(tampered)},
            headers=headers,
        )
        right = client.post(
            f"/v1/me/step-up/{challenge['id']}/answer",
            json={"signature": key.sign(message.encode())},
            headers=headers,
        )
        twice = client.post(
            f"/v1/me/step-up/{challenge['id']}/answer",
            json={"signature": key.sign(message.encode())},
            headers=headers,
        )
    assert message.split("\n") == [
        "billfold-step-up-v1",
        challenge["id"],
        challenge["challenge"],
        "12500",
        "EUR",
        PAYEE,
    ]
    assert_problem(wrong, 403, "step_up_rejected")
    assert right.status_code == 200, right.text
    assert_problem(twice, 403, "step_up_rejected")
    token = right.json()["step_up_token"]
    assert _verify(database_url, user_id=user_id, token=token, now_ns=clock.now_ns()) is None


def test_a_challenge_allows_few_answers_and_expires(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        secret, _ = enrol_totp(client, tokens["access_token"], clock)

        def begin() -> str:
            response = client.post(
                "/v1/me/step-up", json={**ACTION, "method": "totp"}, headers=headers
            )
            return str(response.json()["id"])

        guessed = begin()
        wrong = [
            client.post(
                f"/v1/me/step-up/{guessed}/answer", json={"totp_code": "000000"}, headers=headers
            )
            for _ in range(STEP_UP_ATTEMPTS_MAX)
        ]
        right_code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
        exhausted = client.post(
            f"/v1/me/step-up/{guessed}/answer", json={"totp_code": right_code}, headers=headers
        )
        slow = begin()
        clock.advance(nanoseconds=STEP_UP_CHALLENGE_LIFETIME_NS)
        late_code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
        late = client.post(
            f"/v1/me/step-up/{slow}/answer", json={"totp_code": late_code}, headers=headers
        )
    for response in [*wrong, exhausted, late]:
        assert_problem(response, 403, "step_up_rejected")
    failed = [
        d["reason"] for t, d in event_log(database_url, tenancy.tenant_id) if t == "step_up.failed"
    ]
    assert failed == ["wrong_answer"] * STEP_UP_ATTEMPTS_MAX + ["not_answerable"] * 2


def test_step_up_requests_are_checked(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        ann = signed_in(client, tenancy)
        bob = signed_in(client, tenancy, email="bob@example.com")
        headers = bearer(ann["access_token"])
        no_totp = client.post("/v1/me/step-up", json={**ACTION, "method": "totp"}, headers=headers)
        enrol_totp(client, ann["access_token"], clock)
        bob_device = bind_device(client, bob["access_token"], DeviceKey("p256"))
        cases = {
            "zero amount": ({**ACTION, "amount": 0, "method": "totp"}, 422),
            "huge amount": ({**ACTION, "amount": 2**127, "method": "totp"}, 422),
            "float amount": ({**ACTION, "amount": 1.5, "method": "totp"}, 422),
            "lowercase currency": ({**ACTION, "currency": "eur", "method": "totp"}, 422),
            "newline payee": ({**ACTION, "payee": "a\nb", "method": "totp"}, 422),
            "long payee": ({**ACTION, "payee": "p" * 201, "method": "totp"}, 422),
            "unknown method": ({**ACTION, "method": "sms"}, 422),
            "someone else's device": (
                {**ACTION, "method": "device", "device_id": bob_device["id"]},
                404,
            ),
            "malformed device": ({**ACTION, "method": "device", "device_id": "dev_x"}, 400),
        }
        responses = {
            case: client.post("/v1/me/step-up", json=body, headers=headers)
            for case, (body, _) in cases.items()
        }
        challenge = client.post(
            "/v1/me/step-up", json={**ACTION, "method": "totp"}, headers=headers
        )
        bobs_answer = client.post(
            f"/v1/me/step-up/{challenge.json()['id']}/answer",
            json={"totp_code": "123456"},
            headers=bearer(bob["access_token"]),
        )
        both = client.post(
            f"/v1/me/step-up/{challenge.json()['id']}/answer",
            json={"totp_code": "123456", "signature": "abcd"},
            headers=headers,
        )
    assert_problem(no_totp, 409, "factor_state_conflict")
    for case, (_, status) in cases.items():
        assert responses[case].status_code == status, (case, responses[case].text)
        assert responses[case].headers["content-type"] == "application/problem+json"
    assert_problem(bobs_answer, 404, "step_up_not_found")
    assert_problem(both, 422, "validation_failed")

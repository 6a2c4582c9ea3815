"""End-user identity against the standards it claims, as a demanding reviewer would probe
it: concurrent guesses at a one-time code are bounded by the account lock (RFC 4226 section
7.3, PSD2 RTS article 4(3)(b)), and two concurrent refreshes with one refresh token never
both succeed (RFC 9700 section 4.14.2)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from billfold.identity.users.lockout import LOGIN_FAILURES_MAX
from billfold.identity.users.step_up import STEP_UP_ATTEMPTS_MAX
from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.users_support import (
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

CONCURRENCY = 12
ACTION: dict[str, Any] = {"amount": 12_500, "currency": "EUR", "payee": "acc_shop"}


def _code(secret: str, clock: ManualClock) -> str:
    return totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)


def _wrong_codes(secret: str, clock: ManualClock, count: int) -> list[str]:
    """Codes matching none of the accepted steps, so every one is a wrong guess."""
    right = {_code(secret, clock)} | {
        totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND + offset)
        for offset in (-30, 30)
    }
    return [code for code in (f"{n:06d}" for n in range(count + 3)) if code not in right][:count]


def _concurrently(requests: list[Any]) -> list[int]:
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        return list(pool.map(lambda send: send().status_code, requests))


def test_concurrent_second_factor_guesses_stop_at_the_lock(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        mfa_token = log_in(client, tenancy).json()["mfa"]["mfa_token"]
        statuses = _concurrently(
            [
                lambda code=code: client.post(
                    "/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": code}
                )
                for code in _wrong_codes(secret, clock, 3 * CONCURRENCY)
            ]
        )
        after = log_in(client, tenancy)
    assert set(statuses) == {401}
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"]
    checked = [d for d in failures if d["reason"] == "wrong_totp"]
    # Only as many guesses were checked as the lock allows; the rest were refused unchecked.
    assert len(checked) <= LOGIN_FAILURES_MAX, failures
    assert [d["locked"] for d in checked].count(True) == 1
    assert_problem(after, 401, "invalid_credentials")  # locked


def test_concurrent_step_up_answers_stop_at_the_lock(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        step_ups = [
            client.post(
                "/v1/me/step-up", json={**ACTION, "method": "totp"}, headers=headers
            ).json()["id"]
            for _ in range(CONCURRENCY // STEP_UP_ATTEMPTS_MAX)
        ]
        wrong = _wrong_codes(secret, clock, CONCURRENCY)
        statuses = _concurrently(
            [
                lambda index=index: client.post(
                    f"/v1/me/step-up/{step_ups[index % len(step_ups)]}/answer",
                    json={"totp_code": wrong[index]},
                    headers=headers,
                )
                for index in range(CONCURRENCY)
            ]
        )
    assert set(statuses) == {403}
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "step_up.failed"]
    checked = [d for d in failures if d["reason"] == "wrong_answer"]
    assert len(checked) <= LOGIN_FAILURES_MAX, failures


def test_right_answers_do_not_count_towards_the_lock(database_url: str) -> None:
    """Each answer is counted before it is checked; a right one takes its count back."""
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        secret, _ = enrol_totp(client, tokens["access_token"], clock)
        for _ in range(LOGIN_FAILURES_MAX + 1):
            challenge = client.post(
                "/v1/me/step-up", json={**ACTION, "method": "totp"}, headers=headers
            ).json()["id"]
            answer = client.post(
                f"/v1/me/step-up/{challenge}/answer",
                json={"totp_code": _code(secret, clock)},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
            clock.advance(seconds=30)
        for _ in range(LOGIN_FAILURES_MAX - 1):
            wrong = log_in(client, tenancy).json()["mfa"]["mfa_token"]
            guess = {"mfa_token": wrong, "totp_code": _wrong_codes(secret, clock, 1)[0]}
            assert_problem(client.post("/v1/sessions/mfa", json=guess), 401, "invalid_credentials")
        # Four failures in a row: the fifth attempt is still allowed, and a right code wins.
        mfa_token = log_in(client, tenancy).json()["mfa"]["mfa_token"]
        right = client.post(
            "/v1/sessions/mfa", json={"mfa_token": mfa_token, "totp_code": _code(secret, clock)}
        )
    assert right.status_code == 200, right.text


def test_two_concurrent_refreshes_with_one_token_never_both_succeed(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        for attempt in range(3):
            tokens = signed_in(client, tenancy, email=f"user{attempt}@example.com")
            body = {"refresh_token": tokens["refresh_token"]}
            with ThreadPoolExecutor(max_workers=4) as pool:
                answers = list(
                    pool.map(
                        lambda _, body=body: client.post("/v1/sessions/refresh", json=body),
                        range(4),
                    )
                )
            winners = [answer.json() for answer in answers if answer.status_code == 200]
            assert len(winners) <= 1
            for winner in winners:  # the reuse revoked the family, the winner's tokens too
                reuse = client.post(
                    "/v1/sessions/refresh", json={"refresh_token": winner["refresh_token"]}
                )
                assert_problem(reuse, 401, "refresh_token_invalid")
                me = client.get("/v1/me", headers=bearer(winner["access_token"]))
                assert_problem(me, 401, "unauthorized")
    reused = [t for t, _ in event_log(database_url, tenancy.tenant_id)]
    assert reused.count("refresh_token.reused") >= 3

"""Concurrent wrong passwords against one account: no more guesses are checked than the
lock allows (each is counted before it is checked, atomically), and the lock holds even
for the right password afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from billfold.identity.users.lockout import LOGIN_FAILURES_MAX
from billfold.kit.clock import ManualClock
from identity.users.users_support import (
    PASSWORD,
    DeviceKey,
    assert_problem,
    bearer,
    enrol_totp,
    event_log,
    log_in,
    new_tenancy,
    sign_up,
    signed_in,
    tokens_of,
    users_client,
    users_config,
)

CONCURRENCY = 12


def test_concurrent_wrong_passwords_stop_at_the_lock(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key)
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            statuses = list(
                pool.map(
                    lambda index: log_in(client, tenancy, password=f"wrong guess {index}"),
                    range(3 * CONCURRENCY),
                )
            )
        after = log_in(client, tenancy)
    assert {answer.status_code for answer in statuses} == {401}
    for answer in statuses:
        assert_problem(answer, 401, "invalid_credentials")
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.failed"]
    checked = [d for d in failures if d["reason"] == "wrong_password"]
    # Only as many guesses were checked as the lock allows; the rest were refused unchecked.
    assert len(checked) <= LOGIN_FAILURES_MAX, failures
    assert [d["locked"] for d in checked].count(True) == 1, failures
    assert len(failures) == 3 * CONCURRENCY + 1  # every refusal is on record
    assert_problem(after, 401, "invalid_credentials")  # locked, even for the right password


def test_right_password_does_not_count_towards_the_lock(database_url: str) -> None:
    """A right password takes back the attempt counted before it was checked."""
    clock = ManualClock()
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config(clock)) as client:
        sign_up(client, tenancy.test_key)
        for _ in range(LOGIN_FAILURES_MAX - 1):
            assert_problem(log_in(client, tenancy, password="wrong"), 401, "invalid_credentials")
        tokens_of(log_in(client, tenancy))  # resets the count: a fully successful sign-in
        for _ in range(LOGIN_FAILURES_MAX - 1):
            assert_problem(log_in(client, tenancy, password="wrong"), 401, "invalid_credentials")
        tokens_of(log_in(client, tenancy, password=PASSWORD))


def test_password_step_with_mfa_keeps_the_count_until_the_second_step(
    database_url: str,
) -> None:
    """Passing the password step alone neither resets nor adds to the failure count."""
    clock = ManualClock()
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        enrol_totp(client, tokens["access_token"], clock)
        for _ in range(LOGIN_FAILURES_MAX - 1):
            assert_problem(log_in(client, tenancy, password="wrong"), 401, "invalid_credentials")
        for _ in range(3):  # the right password, again and again, only to the second step
            assert log_in(client, tenancy).json()["status"] == "mfa_required"
        assert_problem(log_in(client, tenancy, password="wrong"), 401, "invalid_credentials")
        assert_problem(log_in(client, tenancy), 401, "invalid_credentials")  # locked


def test_concurrent_wrong_passwords_when_asked_again_stop_at_the_lock(database_url: str) -> None:
    """Binding a device asks for the password again: a stolen access token does not buy
    parallel guesses past the lock either."""
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])

        def bind(password: str) -> Any:
            body = {
                "name": "Phone",
                "algorithm": "ed25519",
                "public_key": DeviceKey("ed25519").public_key(),
                "password": password,
            }
            return client.post("/v1/me/devices", json=body, headers=headers)

        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            answers = list(pool.map(lambda n: bind(f"wrong guess {n}"), range(3 * CONCURRENCY)))
        right_but_locked = bind(PASSWORD)
    for answer in answers:
        assert_problem(answer, 401, "invalid_credentials")
    assert_problem(right_but_locked, 401, "invalid_credentials")
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.failed"]
    checked = [d for d in failures if d["reason"] == "wrong_password"]
    assert len(checked) <= LOGIN_FAILURES_MAX, failures
    assert [d["locked"] for d in checked].count(True) == 1, failures


def test_a_refused_action_after_the_right_password_counts_no_failure(database_url: str) -> None:
    """The attempt counted before the password is checked is taken back when the password
    was right, even if the action then fails for another reason."""
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        headers = bearer(tokens["access_token"])
        for _ in range(LOGIN_FAILURES_MAX + 1):  # no second factor to back up: 409
            refused = client.post(
                "/v1/me/mfa/recovery-codes", json={"password": PASSWORD}, headers=headers
            )
            assert_problem(refused, 409, "factor_state_conflict")
        tokens_of(log_in(client, tenancy))

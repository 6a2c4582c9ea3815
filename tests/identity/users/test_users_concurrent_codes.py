"""One-time codes under concurrency: a recovery code, or a TOTP code, presented in several
sign-ins at once proves at most one of them (RFC 6238 section 5.2: a code is accepted
once)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.users_support import (
    enrol_totp,
    event_log,
    log_in,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

CONCURRENCY = 4


def _race(database_url: str, answer: str) -> tuple[list[int], list[str]]:
    """Sign in CONCURRENCY times with one answer to the second step, all at once: the
    status of each, and the recorded second-step failures' reasons."""
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        secret, recovery_codes = enrol_totp(client, tokens["access_token"], clock)
        code = {
            "recovery_code": recovery_codes[0],
            "totp_code": totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND),
        }[answer]
        mfa_tokens = [
            log_in(client, tenancy).json()["mfa"]["mfa_token"] for _ in range(CONCURRENCY)
        ]
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            statuses = list(
                pool.map(
                    lambda mfa_token: (
                        client.post(
                            "/v1/sessions/mfa", json={"mfa_token": mfa_token, answer: code}
                        ).status_code
                    ),
                    mfa_tokens,
                )
            )
    reasons = [
        d["reason"] for t, d in event_log(database_url, tenancy.tenant_id) if t == "mfa.failed"
    ]
    return statuses, reasons


def test_a_recovery_code_used_concurrently_proves_one_sign_in(database_url: str) -> None:
    statuses, reasons = _race(database_url, "recovery_code")
    assert sorted(statuses) == [200] + [401] * (CONCURRENCY - 1)
    assert reasons == ["wrong_recovery_code"] * (CONCURRENCY - 1)


def test_a_totp_code_used_concurrently_proves_one_sign_in(database_url: str) -> None:
    statuses, reasons = _race(database_url, "totp_code")
    assert sorted(statuses) == [200] + [401] * (CONCURRENCY - 1)
    assert reasons == ["wrong_totp"] * (CONCURRENCY - 1)

"""A spent refresh token presented again and again: its family is revoked at the first
reuse, and ``refresh_token.reused`` is recorded once per family, not once per request."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from identity.users.users_support import (
    assert_problem,
    bearer,
    event_log,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)

PRESENTATIONS = 8


def _reuses(database_url: str, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    return [d for t, d in event_log(database_url, tenant_id) if t == "refresh_token.reused"]


def test_a_spent_token_presented_again_and_again_is_recorded_once(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        stolen = signed_in(client, tenancy)
        body = {"refresh_token": stolen["refresh_token"]}
        rotated = client.post("/v1/sessions/refresh", json=body)
        assert rotated.status_code == 200, rotated.text
        for _ in range(PRESENTATIONS):  # one after the other
            assert_problem(
                client.post("/v1/sessions/refresh", json=body), 401, "refresh_token_invalid"
            )
        with ThreadPoolExecutor(max_workers=4) as pool:  # and at once
            answers = list(
                pool.map(lambda _: client.post("/v1/sessions/refresh", json=body), range(8))
            )
        newest = client.get("/v1/me", headers=bearer(rotated.json()["access_token"]))
    for answer in answers:
        assert_problem(answer, 401, "refresh_token_invalid")
    assert_problem(newest, 401, "unauthorized")  # the family was revoked at the first reuse
    assert _reuses(database_url, tenancy.tenant_id) == [{"session_id": stolen["session_id"]}]


def test_a_reuse_after_a_logout_is_still_recorded_once(database_url: str) -> None:
    """A family revoked for another reason: its spent token presented later is still the
    sign of a stolen token, recorded once."""
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        stolen = signed_in(client, tenancy)
        body = {"refresh_token": stolen["refresh_token"]}
        rotated = client.post("/v1/sessions/refresh", json=body).json()
        logout = client.post("/v1/me/logout", headers=bearer(rotated["access_token"]))
        assert logout.status_code == 200, logout.text
        for _ in range(PRESENTATIONS):
            assert_problem(
                client.post("/v1/sessions/refresh", json=body), 401, "refresh_token_invalid"
            )
    assert _reuses(database_url, tenancy.tenant_id) == [{"session_id": stolen["session_id"]}]

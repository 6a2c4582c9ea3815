"""A refused refresh leaves a trace a security team can act on: `refresh.failed` with the
session and the reason (never the token), once per token, so replaying a dead token cannot
fill the log; a token Billfold never issued writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import list_security_events
from billfold.identity.users.sessions import REFRESH_TOKEN_LIFETIME_NS
from billfold.kit.clock import ManualClock
from identity.identity_support import run_in_unit_of_work
from identity.users.users_support import (
    assert_problem,
    bearer,
    event_log,
    new_tenancy,
    signed_in,
    users_client,
    users_config,
)


def _refresh_failures(database_url: str, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's `refresh.failed` events, oldest first, with their actor and subject."""

    async def read(session: AsyncSession) -> list[dict[str, Any]]:
        events = await list_security_events(session, tenant_id=tenant_id, limit=500)
        return [
            {
                "actor_type": event.actor_type,
                "actor_id": event.actor_id,
                "subject_id": event.subject_id,
                "detail": event.detail,
            }
            for event in reversed(events)
            if event.event_type == "refresh.failed"
        ]

    return run_in_unit_of_work(database_url, read)


def test_an_expired_refresh_token_is_recorded_once_without_the_token(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        user_id = client.get("/v1/me", headers=bearer(tokens["access_token"])).json()["id"]
        clock.advance(seconds=REFRESH_TOKEN_LIFETIME_NS // 1_000_000_000 + 1)
        replays = [
            client.post("/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(3)
        ]
    for response in replays:
        assert_problem(response, 401, "refresh_token_invalid")
    failures = _refresh_failures(database_url, tenancy.tenant_id)
    assert len(failures) == 1, failures
    (failure,) = failures
    assert failure["subject_id"] == user_id
    assert failure["actor_type"] == "user"
    assert failure["actor_id"] is None  # whoever presented it is not known to be the user
    assert f'"session_id":"{tokens["session_id"]}"' in failure["detail"]
    assert '"reason":"expired"' in failure["detail"]
    assert tokens["refresh_token"] not in failure["detail"]
    assert tokens["refresh_token"][-20:] not in failure["detail"]


def test_a_revoked_sessions_refresh_token_is_recorded_and_a_foreign_one_is_not(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        logout = client.post("/v1/me/logout", headers=bearer(tokens["access_token"]))
        after_logout = client.post(
            "/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        unknown = client.post("/v1/sessions/refresh", json={"refresh_token": "bfu_rt_" + "A" * 43})
    assert logout.status_code == 200, logout.text
    assert_problem(after_logout, 401, "refresh_token_invalid")
    assert_problem(unknown, 401, "refresh_token_invalid")
    failures = _refresh_failures(database_url, tenancy.tenant_id)
    assert [f["detail"] for f in failures] == [
        f'{{"reason":"session_revoked","session_id":"{tokens["session_id"]}"}}'
    ]


def test_a_spent_token_is_still_a_reuse_not_a_failure(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        first = signed_in(client, tenancy)
        rotated = client.post(
            "/v1/sessions/refresh", json={"refresh_token": first["refresh_token"]}
        )
        reused = client.post("/v1/sessions/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    assert_problem(reused, 401, "refresh_token_invalid")
    types = [t for t, _ in event_log(database_url, tenancy.tenant_id)]
    assert types.count("refresh_token.reused") == 1
    assert "refresh.failed" not in types

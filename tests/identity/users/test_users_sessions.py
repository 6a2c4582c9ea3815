"""Sessions: short-lived access tokens, rotating refresh tokens with reuse detection, and
revoking one session or all of them."""

from __future__ import annotations

from fastapi import Request
from fastapi.testclient import TestClient

from billfold.identity.users.auth import user_idempotency_scope
from billfold.identity.users.sessions import ACCESS_TOKEN_LIFETIME_NS, SESSIONS_PER_USER_MAX
from billfold.kit.clock import ManualClock
from identity.users.users_support import (
    assert_problem,
    bearer,
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


def test_an_access_token_proves_the_user_and_an_api_key_does_not(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        me = client.get("/v1/me", headers=bearer(tokens["access_token"]))
        with_api_key = client.get("/v1/me", headers=bearer(tenancy.test_key.secret))
        with_refresh_token = client.get("/v1/me", headers=bearer(tokens["refresh_token"]))
        user_on_backend_route = client.get("/v1/users", headers=bearer(tokens["access_token"]))
        anonymous = client.get("/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ann@example.com"
    for response in (with_api_key, with_refresh_token):
        assert_problem(response, 401, "unauthorized")
        challenge = 'Bearer realm="billfold-users", error="invalid_token"'  # RFC 6750
        assert response.headers["www-authenticate"] == challenge
    assert_problem(user_on_backend_route, 401, "unauthorized")
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="billfold-users"'


def test_an_access_token_lives_fifteen_minutes(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        clock.advance(nanoseconds=ACCESS_TOKEN_LIFETIME_NS - 1)
        fresh = client.get("/v1/me", headers=bearer(tokens["access_token"]))
        clock.advance(nanoseconds=1)
        stale = client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert fresh.status_code == 200
    assert_problem(stale, 401, "unauthorized")


def test_a_refresh_rotates_both_tokens_and_spends_the_old_refresh_token(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        first = signed_in(client, tenancy)
        second = client.post("/v1/sessions/refresh", json={"refresh_token": first["refresh_token"]})
        second_tokens = second.json()
        me = client.get("/v1/me", headers=bearer(second_tokens["access_token"]))
    assert second.status_code == 200
    assert second_tokens["session_id"] == first["session_id"]
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert second_tokens["access_token"] != first["access_token"]
    assert me.status_code == 200


def test_reusing_a_refresh_token_revokes_the_whole_family(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        stolen = signed_in(client, tenancy)
        other_session = tokens_of(log_in(client, tenancy))

        def refresh(token: str) -> dict[str, str]:
            response = client.post("/v1/sessions/refresh", json={"refresh_token": token})
            return dict(response.json(), status=str(response.status_code))

        second = refresh(stolen["refresh_token"])  # the legitimate client rotates twice
        newest = refresh(second["refresh_token"])
        reused = client.post(
            "/v1/sessions/refresh", json={"refresh_token": stolen["refresh_token"]}
        )
        newest_refresh = client.post(
            "/v1/sessions/refresh", json={"refresh_token": newest["refresh_token"]}
        )
        newest_access = client.get("/v1/me", headers=bearer(newest["access_token"]))
        untouched = client.get("/v1/me", headers=bearer(other_session["access_token"]))
    assert (second["status"], newest["status"]) == ("200", "200")
    assert_problem(reused, 401, "refresh_token_invalid")
    assert_problem(newest_refresh, 401, "refresh_token_invalid")
    assert_problem(newest_access, 401, "unauthorized")
    assert untouched.status_code == 200, "another session of the same user is not that family"
    reuses = [
        d for t, d in event_log(database_url, tenancy.tenant_id) if t == "refresh_token.reused"
    ]
    assert reuses == [{"session_id": stolen["session_id"]}]


def test_a_malformed_or_unknown_refresh_token_changes_nothing(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        tokens = signed_in(client, tenancy)
        cases = [
            "",
            "bfu_rt_" + "A" * 43,
            tokens["access_token"],
            tokens["refresh_token"] + "x",
            "x" * 10_000,
        ]
        responses = [
            client.post("/v1/sessions/refresh", json={"refresh_token": case}) for case in cases
        ]
        still_good = client.post(
            "/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    statuses = [response.status_code for response in responses]
    assert statuses == [422, 401, 401, 401, 422]
    assert still_good.status_code == 200
    assert "refresh_token.reused" not in [t for t, _ in event_log(database_url, tenancy.tenant_id)]


def test_a_user_lists_and_revokes_sessions(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        mine = signed_in(client, tenancy)
        laptop = tokens_of(log_in(client, tenancy))
        tablet = tokens_of(log_in(client, tenancy))
        me = bearer(mine["access_token"])
        listed = client.get("/v1/me/sessions", headers=me).json()["items"]
        revoked = client.post(f"/v1/me/sessions/{laptop['session_id']}/revoke", headers=me)
        laptop_after = client.get("/v1/me", headers=bearer(laptop["access_token"]))
        laptop_refresh = client.post(
            "/v1/sessions/refresh", json={"refresh_token": laptop["refresh_token"]}
        )
        unknown = client.post(f"/v1/me/sessions/ses_{'0' * 32}/revoke", headers=me)
        logout = client.post("/v1/me/logout", headers=bearer(tablet["access_token"]))
        tablet_after = client.get("/v1/me", headers=bearer(tablet["access_token"]))
        remaining = client.get("/v1/me/sessions", headers=me).json()["items"]
        everything = client.post("/v1/me/sessions/revoke-all", headers=me)
        mine_after = client.get("/v1/me", headers=me)
    assert [(s["id"], s["current"]) for s in listed] == [
        (mine["session_id"], True),
        (laptop["session_id"], False),
        (tablet["session_id"], False),
    ]
    assert revoked.status_code == 200
    assert_problem(laptop_after, 401, "unauthorized")
    assert_problem(laptop_refresh, 401, "refresh_token_invalid")
    assert_problem(unknown, 404, "session_not_found")
    assert logout.status_code == 200
    assert_problem(tablet_after, 401, "unauthorized")
    assert [s["id"] for s in remaining] == [mine["session_id"]]
    assert everything.json() == {"revoked": 1}
    assert_problem(mine_after, 401, "unauthorized")
    revocations = [
        d for t, d in event_log(database_url, tenancy.tenant_id) if t == "sessions.revoked"
    ]
    assert [d["reason"] for d in revocations] == ["revoked", "logout", "revoked_all"]


def test_a_user_cannot_revoke_another_users_session(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        ann = signed_in(client, tenancy)
        bob = signed_in(client, tenancy, email="bob@example.com")
        response = client.post(
            f"/v1/me/sessions/{bob['session_id']}/revoke", headers=bearer(ann["access_token"])
        )
        bob_after = client.get("/v1/me", headers=bearer(bob["access_token"]))
    assert_problem(response, 404, "session_not_found")
    assert bob_after.status_code == 200


def test_the_backend_ends_every_session_of_its_user(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        user = sign_up(client, tenancy.test_key)
        tokens = tokens_of(log_in(client, tenancy))
        foreign = client.post(
            f"/v1/users/{user['id']}/sessions/revoke", headers=bearer(other.test_key.secret)
        )
        before = client.get("/v1/me", headers=bearer(tokens["access_token"]))
        revoked = client.post(
            f"/v1/users/{user['id']}/sessions/revoke", headers=bearer(tenancy.test_key.secret)
        )
        after = client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert_problem(foreign, 404, "user_not_found")
    assert before.status_code == 200
    assert revoked.json() == {"revoked": 1}
    assert_problem(after, 401, "unauthorized")


def test_signing_in_beyond_the_session_limit_ends_the_oldest(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key)
        sessions = [tokens_of(log_in(client, tenancy)) for _ in range(SESSIONS_PER_USER_MAX + 1)]
        oldest = client.get("/v1/me", headers=bearer(sessions[0]["access_token"]))
        second = client.get("/v1/me", headers=bearer(sessions[1]["access_token"]))
        listed = client.get("/v1/me/sessions", headers=bearer(sessions[-1]["access_token"]))
    assert_problem(oldest, 401, "unauthorized")
    assert second.status_code == 200
    assert len(listed.json()["items"]) == SESSIONS_PER_USER_MAX


def test_idempotency_keys_of_end_users_are_scoped_per_user(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    app = users_app(database_url, users_config())

    @app.get("/scope")
    async def scope(request: Request) -> dict[str, str | None]:
        return {"scope": await user_idempotency_scope(request)}

    with TestClient(app) as client:
        tokens = signed_in(client, tenancy)
        refreshed = client.post(
            "/v1/sessions/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).json()
        me = client.get("/v1/me", headers=bearer(tokens["access_token"])).json()
        scopes = [
            client.get("/scope", headers=headers).json()["scope"]
            for headers in (
                bearer(tokens["access_token"]),
                bearer(refreshed["access_token"]),
                bearer(tenancy.test_key.secret),
                bearer(tokens["refresh_token"]),
                {},
            )
        ]
    user_scope = f"user:{me['id'][4:]}"
    assert scopes == [user_scope, user_scope, None, None, None]

"""Sign-up by the tenant's backend, sign-in with a password: normalized identifiers,
Argon2id with rehashing, uniform failures, the account lock and their security events."""

from __future__ import annotations

import uuid

from billfold.identity.passwords import PasswordParameters
from billfold.identity.users.lockout import LOCK_DURATION_NS, LOGIN_FAILURES_MAX
from billfold.kit.clock import ManualClock
from identity.identity_support import read_row
from identity.users.users_support import (
    PASSWORD,
    assert_problem,
    bearer,
    event_log,
    event_types,
    log_in,
    new_tenancy,
    sign_up,
    tokens_of,
    users_client,
    users_config,
)


def test_sign_up_normalizes_identifiers_and_stores_only_an_argon2id_hash(
    database_url: str,
) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        user = sign_up(
            client,
            tenancy.test_key,
            email="  Ann@Example.COM ",
            phone="+44 (20) 7946-0958",
            handle="Ann_1",
        )
    assert (user["email"], user["phone"], user["handle"]) == (
        "ann@example.com",
        "+442079460958",
        "ann_1",
    )
    assert user["mode"] == "test"
    assert user["tenant_id"] == tenancy.public_id
    row = read_row(database_url, table="identity_users", row_id=uuid.UUID(user["id"][4:]))
    assert str(row["password_hash"]).startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert PASSWORD not in str(row)
    (event_type, detail), *_ = event_log(database_url, tenancy.tenant_id)[-1:]
    assert event_type == "user.signed_up"
    assert detail["identifiers"] == "email,phone,handle"


def test_identifiers_are_unique_per_tenant_and_mode(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key, email="ann@example.com", handle="ann")
        again = client.post(
            "/v1/users",
            json={"email": "ANN@example.com", "password": PASSWORD},
            headers=bearer(tenancy.test_key.secret),
        )
        same_handle = client.post(
            "/v1/users",
            json={"handle": "Ann", "password": PASSWORD},
            headers=bearer(tenancy.test_key.secret),
        )
        sign_up(client, tenancy.live_key, email="ann@example.com")  # live is another world
        sign_up(client, other.test_key, email="ann@example.com")  # so is another tenant
    assert assert_problem(again, 409, "identifier_taken")["field"] == "email"
    assert assert_problem(same_handle, 409, "identifier_taken")["field"] == "handle"


def test_a_user_signs_in_with_any_of_their_identifiers(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    config = users_config()
    with users_client(database_url, config) as client:
        sign_up(client, tenancy.test_key, email="ann@example.com", phone="+15551234567")
        sign_up(client, tenancy.test_key, email="bob@example.com", handle="bob")
        by_email = tokens_of(log_in(client, tenancy, identifier=" ANN@example.com"))
        by_phone = tokens_of(log_in(client, tenancy, identifier="+1 555 123 4567"))
        by_handle = tokens_of(log_in(client, tenancy, identifier="Bob"))
        me = client.get("/v1/me", headers=bearer(by_handle["access_token"])).json()
    assert by_email["access_token"].startswith("bfu_at_")
    assert by_phone["refresh_token"].startswith("bfu_rt_")
    assert by_email["session_id"] != by_phone["session_id"]
    assert me["email"] == "bob@example.com"
    assert me["mfa_methods"] == []
    succeeded = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.succeeded"]
    assert [detail["methods"] for detail in succeeded] == ["password"] * 3


def test_every_failed_sign_in_looks_the_same_and_is_recorded(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key, email="ann@example.com")
        sign_up(client, other.test_key, email="zed@example.com")
        attempts = {
            "wrong password": log_in(client, tenancy, password="not the password"),
            "unknown user": log_in(client, tenancy, identifier="nobody@example.com"),
            "malformed identifier": log_in(client, tenancy, identifier="@@"),
            "other mode": log_in(client, tenancy, mode="live"),
            "other tenant's user": log_in(client, tenancy, identifier="zed@example.com"),
        }
        no_tenant = client.post(
            "/v1/sessions",
            json={
                "tenant_id": f"ten_{uuid.uuid4().hex}",
                "mode": "test",
                "identifier": "ann@example.com",
                "password": PASSWORD,
            },
        )
    attempts["no such tenant"] = no_tenant
    bodies = set()
    for case, response in attempts.items():
        assert_problem(response, 401, "invalid_credentials")
        assert "access_token" not in response.text, case
        bodies.add(response.content)
    assert len(bodies) == 1, "no failure may tell which case it was"
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.failed"]
    reasons = sorted(detail["reason"] for detail in failures)
    assert reasons == ["unknown_identifier"] * 4 + ["wrong_password"]
    assert event_types(database_url, other.tenant_id).count("login.failed") == 0


def test_the_account_locks_after_repeated_failures_then_unlocks(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        user = sign_up(client, tenancy.test_key)
        for _ in range(LOGIN_FAILURES_MAX):
            assert_problem(
                log_in(client, tenancy, password="wrong password!"), 401, "invalid_credentials"
            )
        locked = log_in(client, tenancy)  # the right password, while locked
        status = client.get(f"/v1/users/{user['id']}", headers=bearer(tenancy.test_key.secret))
        clock.advance(nanoseconds=LOCK_DURATION_NS - 1)
        still_locked = log_in(client, tenancy)
        clock.advance(nanoseconds=1)
        unlocked = log_in(client, tenancy)
    assert_problem(locked, 401, "invalid_credentials")
    assert_problem(still_locked, 401, "invalid_credentials")
    assert status.json()["locked_until"] is not None
    tokens_of(unlocked)
    failures = [d for t, d in event_log(database_url, tenancy.tenant_id) if t == "login.failed"]
    assert [d["locked"] for d in failures] == [False] * (LOGIN_FAILURES_MAX - 1) + [True] * 3
    assert [d["reason"] for d in failures[-2:]] == ["locked", "locked"]


def test_a_success_resets_the_failure_count(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        sign_up(client, tenancy.test_key)
        for _ in range(LOGIN_FAILURES_MAX - 1):
            log_in(client, tenancy, password="wrong password!")
        tokens_of(log_in(client, tenancy))
        for _ in range(LOGIN_FAILURES_MAX - 1):
            log_in(client, tenancy, password="wrong password!")
        tokens_of(log_in(client, tenancy))


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        user = sign_up(client, tenancy.test_key)
    user_id = uuid.UUID(user["id"][4:])
    before = read_row(database_url, table="identity_users", row_id=user_id)["password_hash"]
    stronger = PasswordParameters(time_cost=2, memory_cost_kib=2048, parallelism=1)
    with users_client(database_url, users_config(clock, password_parameters=stronger)) as client:
        tokens_of(log_in(client, tenancy))
        after = read_row(database_url, table="identity_users", row_id=user_id)["password_hash"]
        tokens_of(log_in(client, tenancy))  # the upgraded hash verifies
        assert_problem(
            log_in(client, tenancy, password="wrong password!"), 401, "invalid_credentials"
        )
    assert str(before).startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert str(after).startswith("$argon2id$v=19$m=2048,t=2,p=1$")


def test_sign_up_refuses_weak_passwords_and_malformed_identifiers(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    key = bearer(tenancy.test_key.secret)
    cases = {
        "short password": ({"email": "a@example.com", "password": "short"}, 422, "weak_password"),
        "blank password": ({"email": "a@example.com", "password": " " * 12}, 422, "weak_password"),
        "no identifier": ({"password": PASSWORD}, 422, "invalid_identifier"),
        "bad email": ({"email": "not-an-email", "password": PASSWORD}, 422, "invalid_identifier"),
        "bad phone": ({"phone": "0207 946 0958", "password": PASSWORD}, 422, "invalid_identifier"),
        "bad handle": ({"handle": "1abc", "password": PASSWORD}, 422, "invalid_identifier"),
        "unknown field": (
            {"email": "a@example.com", "password": PASSWORD, "admin": True},
            422,
            "validation_failed",
        ),
        "oversized": ({"email": "a" * 300, "password": PASSWORD}, 422, "validation_failed"),
        "long password": (
            {"email": "a@example.com", "password": "x" * 257},
            422,
            "validation_failed",
        ),
    }
    with users_client(database_url, users_config()) as client:
        for case, (body, status, code) in cases.items():
            response = client.post("/v1/users", json=body, headers=key)
            assert response.status_code == status, case
            assert_problem(response, status, code)
        listing = client.get("/v1/users", headers=key).json()
    assert listing["items"] == [], "nothing was created"
    assert "user.signed_up" not in event_types(database_url, tenancy.tenant_id)


def test_the_backend_sees_only_its_own_tenant_and_mode(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        users = [
            sign_up(client, tenancy.test_key, email=f"user{index}@example.com")
            for index in range(3)
        ]
        key = bearer(tenancy.test_key.secret)
        first = client.get("/v1/users", params={"limit": 2}, headers=key).json()
        second = client.get(
            "/v1/users", params={"limit": 2, "cursor": first["next_cursor"]}, headers=key
        ).json()
        found = client.get("/v1/users", params={"identifier": "USER1@example.com"}, headers=key)
        own = client.get(f"/v1/users/{users[0]['id']}", headers=key)
        live = client.get(f"/v1/users/{users[0]['id']}", headers=bearer(tenancy.live_key.secret))
        foreign = client.get(f"/v1/users/{users[0]['id']}", headers=bearer(other.test_key.secret))
        foreign_list = client.get("/v1/users", headers=bearer(other.test_key.secret)).json()
        malformed = client.get("/v1/users/usr_nothex", headers=key)
    assert [user["id"] for user in first["items"] + second["items"]] == [u["id"] for u in users]
    assert second["next_cursor"] is None
    assert [user["email"] for user in found.json()["items"]] == ["user1@example.com"]
    assert own.status_code == 200
    assert_problem(live, 404, "user_not_found")
    assert_problem(foreign, 404, "user_not_found")
    assert foreign_list["items"] == []
    assert_problem(malformed, 400, "invalid_id")

"""Operators over HTTP, on both backends: creating them, signing in and out, one-time
passwords, roles, disabling, and tenants that never see each other."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from billfold.identity.operators import service
from billfold.identity.operators.errors import LastAdministrator
from billfold.identity.operators.models import Operator, OperatorSession
from billfold.identity.operators.permissions import Role
from billfold.identity.operators.service import LOGIN_FAILURES_MAX
from billfold.identity.operators.types import Actor
from billfold.identity.security_events import list_security_events
from billfold.identity.types import Mode, Scope
from billfold.kit.ids import format_id
from identity.identity_support import bearer, create_key, run_in_unit_of_work
from identity.operators.operators_support import (
    PASSWORD,
    create_operator,
    new_tenant,
    operator,
    operator_client,
)

PROBLEM = "application/problem+json"


def _login(client: TestClient, tenant_id: uuid.UUID, email: str, password: str) -> object:
    body = {"tenant_id": format_id("ten", tenant_id), "email": email, "password": password}
    return client.post("/v1/operators/login", json=body)


def _assert_problem(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    assert response.json()["code"] == code  # type: ignore[attr-defined]


def _operator_row(database_url: str, operator_id: uuid.UUID) -> Operator:
    async def read(session: object) -> Operator:
        row = await session.get(Operator, operator_id)  # type: ignore[attr-defined]
        assert row is not None
        return row  # type: ignore[no-any-return]

    return run_in_unit_of_work(database_url, read)


def test_the_first_admin_is_made_with_a_live_admin_key_and_must_change_its_password(
    database_url: str,
) -> None:
    tenant = new_tenant(database_url)
    body = {"email": " Ada@Example.com ", "display_name": "Ada", "roles": ["admin"]}
    reader = create_key(
        database_url, tenant_id=tenant.tenant.id, scopes=[Scope.LEDGER_READ], mode=Mode.LIVE
    )
    with operator_client(database_url) as client:
        with_test_key = client.post(
            "/v1/operators", json=body, headers=bearer(tenant.test_key.secret)
        )
        with_reader = client.post("/v1/operators", json=body, headers=bearer(reader.secret))
        created = client.post("/v1/operators", json=body, headers=bearer(tenant.live_key.secret))
        duplicate = client.post("/v1/operators", json=body, headers=bearer(tenant.live_key.secret))
        one_time = created.json()["one_time_password"]
        signed = _login(client, tenant.tenant.id, "ada@example.com", one_time)
        token = signed.json()["token"]  # type: ignore[attr-defined]
        blocked = client.get("/v1/operators", headers=bearer(token))
        me = client.get("/v1/operators/me", headers=bearer(token))
        changed = client.post(
            "/v1/operators/me/password",
            json={"current_password": one_time, "new_password": PASSWORD},
            headers=bearer(token),
        )
        listing = client.get("/v1/operators", headers=bearer(token))
    _assert_problem(with_test_key, 403, "permission_denied")
    _assert_problem(with_reader, 403, "insufficient_scope")
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "ada@example.com"
    assert created.json()["roles"] == ["admin"]
    assert "operators.manage" in created.json()["permissions"]
    assert "password_hash" not in created.text
    _assert_problem(duplicate, 409, "operator_email_taken")
    assert signed.status_code == 201  # type: ignore[attr-defined]
    assert token.startswith("bfo_")
    _assert_problem(blocked, 403, "password_change_required")
    assert me.json()["password_change_required"] is True
    assert changed.status_code == 200
    assert changed.json()["password_change_required"] is False
    assert listing.status_code == 200
    assert [item["email"] for item in listing.json()["items"]] == ["ada@example.com"]


def test_wrong_current_passwords_count_toward_the_lock_and_are_recorded(
    database_url: str,
) -> None:
    """Changing the password proves the current one: a stolen session guessing it there is
    held to the sign-in's lock (it was not counted, nor recorded), and a locked operator
    changes nothing, right password or not."""
    tenant_id = new_tenant(database_url).tenant.id
    officer = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    path, new = "/v1/operators/me/password", "an entirely new passphrase"
    with operator_client(database_url) as client:
        guesses = [
            client.post(
                path,
                json={"current_password": f"guess number {n}", "new_password": new},
                headers=bearer(officer.token),
            )
            for n in range(LOGIN_FAILURES_MAX)
        ]
        right = client.post(
            path,
            json={"current_password": PASSWORD, "new_password": new},
            headers=bearer(officer.token),
        )
        sign_in = _login(client, tenant_id, officer.email, PASSWORD)
    for refused in [*guesses, right]:
        _assert_problem(refused, 422, "invalid_password")
    _assert_problem(sign_in, 401, "login_failed")
    row = _operator_row(database_url, officer.operator_id)
    assert row.locked_until is not None and row.locked_until > time.time_ns()
    events = run_in_unit_of_work(
        database_url,
        lambda session: list_security_events(session, tenant_id=tenant_id, limit=500),
    )
    stages = [
        json.loads(event.detail).get("stage")
        for event in events
        if event.event_type == "login.failed"
        and event.subject_id == format_id("opr", officer.operator_id)
    ]
    assert stages.count("password_change") == LOGIN_FAILURES_MAX + 1


def test_every_failed_sign_in_looks_alike_and_many_lock_the_operator(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    created = create_operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    email = created.operator.email
    with operator_client(database_url) as client:
        failures = [
            _login(client, tenant_id, email, "wrong password!"),
            _login(client, tenant_id, "nobody@example.com", PASSWORD),
            _login(client, uuid.uuid4(), email, PASSWORD),
        ]
        for _ in range(LOGIN_FAILURES_MAX - 1):
            _login(client, tenant_id, email, "wrong password!")
        locked = _login(client, tenant_id, email, PASSWORD)
    bodies = set()
    for response in [*failures, locked]:
        _assert_problem(response, 401, "login_failed")
        bodies.add(response.content)  # type: ignore[attr-defined]
    assert len(bodies) == 1
    row = _operator_row(database_url, created.operator.id)
    assert row.locked_until is not None and row.locked_until > time.time_ns()


def test_a_session_ends_on_logout_on_disable_and_on_expiry(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    other = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    leaving = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    _expire_sessions(database_url, other.operator_id)
    with operator_client(database_url) as client:
        assert client.get("/v1/operators/me", headers=admin.headers).status_code == 200
        expired = client.get("/v1/operators/me", headers=other.headers)
        disabled = client.post(f"/v1/operators/{leaving.public_id}/disable", headers=admin.headers)
        after_disable = client.get("/v1/operators/me", headers=leaving.headers)
        relogin = _login(client, tenant_id, leaving.email, PASSWORD)
        assert client.post("/v1/operators/logout", headers=admin.headers).status_code == 204
        after_logout = client.get("/v1/operators/me", headers=admin.headers)
    assert disabled.json()["status"] == "disabled"
    for response in (expired, after_disable, after_logout):
        _assert_problem(response, 401, "unauthorized")
        # RFC 6750 section 3.1: the session was presented, and is not (or no longer) valid.
        challenge = 'Bearer realm="billfold-operators", error="invalid_token"'
        assert response.headers["www-authenticate"] == challenge
    _assert_problem(relogin, 401, "login_failed")
    # A refused sign-in presented no token: the bare challenge.
    assert relogin.headers["www-authenticate"] == 'Bearer realm="billfold-operators"'


def test_roles_change_for_others_only_and_an_admin_always_remains(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    path = f"/v1/operators/{colleague.public_id}/roles"
    with operator_client(database_url) as client:
        own = client.put(
            f"/v1/operators/{admin.public_id}/roles",
            json={"roles": ["admin", "finance"]},
            headers=admin.headers,
        )
        own_disable = client.post(f"/v1/operators/{admin.public_id}/disable", headers=admin.headers)
        promoted = client.put(path, json={"roles": ["admin", "support"]}, headers=admin.headers)
        unknown_role = client.put(path, json={"roles": ["root"]}, headers=admin.headers)
        empty = client.put(path, json={"roles": []}, headers=admin.headers)
        demoted = client.put(
            f"/v1/operators/{admin.public_id}/roles",
            json={"roles": ["support"]},
            headers=colleague.headers,
        )
    _assert_problem(own, 403, "self_management_forbidden")
    _assert_problem(own_disable, 403, "self_management_forbidden")
    assert promoted.json()["roles"] == ["admin", "support"]
    _assert_problem(unknown_role, 422, "validation_failed")
    _assert_problem(empty, 422, "validation_failed")
    assert demoted.json()["roles"] == ["support"]
    assert _operator_row(database_url, admin.operator_id).roles == "support"
    # Over HTTP the caller is itself an active admin, so one always remains; a caller that
    # is not an operator (the command line) meets the guard.
    for change in (_demote, _disable):
        with pytest.raises(LastAdministrator):
            run_in_unit_of_work(database_url, change(tenant_id, colleague.operator_id))
    assert _operator_row(database_url, colleague.operator_id).status == "active"


def _demote(tenant_id: uuid.UUID, operator_id: uuid.UUID) -> object:
    return lambda session: service.set_operator_roles(
        session,
        principal=None,
        tenant_id=tenant_id,
        operator_id=operator_id,
        roles=[Role.SUPPORT],
        actor=Actor.system(),
        now_ns=time.time_ns(),
    )


def _disable(tenant_id: uuid.UUID, operator_id: uuid.UUID) -> object:
    return lambda session: service.set_operator_status(
        session,
        principal=None,
        tenant_id=tenant_id,
        operator_id=operator_id,
        active=False,
        actor=Actor.system(),
        now_ns=time.time_ns(),
    )


def test_tenants_never_see_each_others_operators(database_url: str) -> None:
    home = new_tenant(database_url).tenant.id
    away = new_tenant(database_url).tenant.id
    home_admin = operator(database_url, tenant_id=home, roles=[Role.ADMIN])
    away_admin = operator(database_url, tenant_id=away, roles=[Role.ADMIN])
    away_support = operator(database_url, tenant_id=away, roles=[Role.SUPPORT])
    target = away_support.public_id
    with operator_client(database_url) as client:
        responses = [
            client.get(f"/v1/operators/{target}", headers=home_admin.headers),
            client.put(
                f"/v1/operators/{target}/roles",
                json={"roles": ["admin"]},
                headers=home_admin.headers,
            ),
            client.post(f"/v1/operators/{target}/disable", headers=home_admin.headers),
        ]
        listed = client.get("/v1/operators", headers=home_admin.headers).json()["items"]
        same_email = client.post(
            "/v1/operators",
            json={"email": away_admin.email, "display_name": "Twin", "roles": ["support"]},
            headers=home_admin.headers,
        )
    for response in responses:
        _assert_problem(response, 404, "operator_not_found")
    assert [item["id"] for item in listed] == [home_admin.public_id]
    assert same_email.status_code == 201  # unique per tenant, not across tenants
    row = _operator_row(database_url, away_support.operator_id)
    assert (row.roles, row.status) == ("support", "active")


def test_malformed_requests_are_problems_and_change_nothing(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    with operator_client(database_url) as client:
        cases = {
            "bad id": client.get("/v1/operators/opr_nothex", headers=admin.headers),
            "wrong prefix": client.get(f"/v1/operators/ten_{'0' * 32}", headers=admin.headers),
            "unknown": client.get(f"/v1/operators/opr_{'0' * 32}", headers=admin.headers),
            "bad email": client.post(
                "/v1/operators",
                json={"email": "not-an-address", "display_name": "X", "roles": ["support"]},
                headers=admin.headers,
            ),
            "control character": client.post(
                "/v1/operators",
                json={"email": "a\u0001@b.co", "display_name": "X", "roles": ["support"]},
                headers=admin.headers,
            ),
            "extra field": client.post(
                "/v1/operators",
                json={"email": "a@b.co", "display_name": "X", "roles": ["admin"], "pw": "x"},
                headers=admin.headers,
            ),
            "login bad tenant": client.post(
                "/v1/operators/login",
                json={"tenant_id": "nope", "email": "a@b.co", "password": "x"},
            ),
            "short password": client.post(
                "/v1/operators/me/password",
                json={"current_password": PASSWORD, "new_password": "short"},
                headers=admin.headers,
            ),
            "cursor": client.get("/v1/operators?cursor=%%%", headers=admin.headers),
        }
        listed = client.get("/v1/operators", headers=admin.headers).json()["items"]
    expected = {
        "bad id": (400, "invalid_id"),
        "wrong prefix": (400, "invalid_id"),
        "unknown": (404, "operator_not_found"),
        "bad email": (422, "invalid_email"),
        "control character": (422, "invalid_email"),
        "extra field": (422, "validation_failed"),
        "login bad tenant": (400, "invalid_id"),
        "short password": (422, "invalid_password"),
        "cursor": (400, "invalid_cursor"),
    }
    for case, (status, code) in expected.items():
        _assert_problem(cases[case], status, code)
    assert len(listed) == 1


def _expire_sessions(database_url: str, operator_id: uuid.UUID) -> None:
    from sqlalchemy import update

    async def expire(session: object) -> None:
        await session.execute(  # type: ignore[attr-defined]
            update(OperatorSession)
            .where(OperatorSession.operator_id == operator_id)
            .values(expires_at=time.time_ns() - 1)
        )

    run_in_unit_of_work(database_url, expire)

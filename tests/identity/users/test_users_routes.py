"""Every end-user route: the credential it requires, cross-tenant and cross-mode refusals,
malformed bodies, the OpenAPI security schemes, and migration 0005."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.routing import APIRoute

from billfold.identity.types import Scope
from billfold.identity.users.router import PUBLIC_ROUTES, router
from billfold.migrations import alembic_config, upgrade
from identity.identity_support import create_key
from identity.users.users_support import (
    bearer,
    new_tenancy,
    sign_up,
    signed_in,
    users_client,
    users_config,
)
from migration_support import schema_differences

_ZERO = "0" * 32


def _routes() -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )


def _concrete(path: str, *, user_id: str) -> str:
    replacements = {
        "{user_id}": user_id,
        "{session_id}": f"ses_{_ZERO}",
        "{device_id}": f"dev_{_ZERO}",
        "{step_up_id}": f"stp_{_ZERO}",
    }
    for name, value in replacements.items():
        path = path.replace(name, value)
    assert "{" not in path, path
    return path


def _is_problem(response: Any, status: int) -> bool:
    return bool(
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
    )


def test_the_public_routes_are_exactly_the_sign_in_steps() -> None:
    routes = set(_routes())
    assert routes >= PUBLIC_ROUTES
    assert {path for _, path in PUBLIC_ROUTES} == {
        "/v1/sessions",
        "/v1/sessions/mfa",
        "/v1/sessions/mfa/passkey-options",
        "/v1/sessions/refresh",
    }
    guarded = routes - PUBLIC_ROUTES
    assert all(path.startswith(("/v1/users", "/v1/me")) for _, path in guarded)


def test_every_guarded_route_refuses_the_wrong_credential(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    without_scope = create_key(
        database_url, tenant_id=tenancy.tenant_id, scopes=[Scope.LEDGER_READ]
    )
    with users_client(database_url, users_config()) as client:
        user = sign_up(client, tenancy.test_key)
        tokens = signed_in(client, other, email="zed@example.com")
        for method, path in _routes():
            if (method, path) in PUBLIC_ROUTES:
                continue
            url = _concrete(path, user_id=user["id"])
            anonymous = client.request(method, url, json={})
            assert _is_problem(anonymous, 401), (method, path, anonymous.text)
            if path.startswith("/v1/users"):
                as_user = client.request(
                    method, url, json={}, headers=bearer(tokens["access_token"])
                )
                unscoped = client.request(
                    method, url, json={}, headers=bearer(without_scope.secret)
                )
                assert _is_problem(as_user, 401), (method, path)
                assert _is_problem(unscoped, 403), (method, path)
            else:
                as_key = client.request(
                    method, url, json={}, headers=bearer(tenancy.test_key.secret)
                )
                assert _is_problem(as_key, 401), (method, path)


def test_a_tenant_never_reaches_another_tenants_or_modes_user(database_url: str) -> None:
    tenancy, other = new_tenancy(database_url), new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        user = sign_up(client, tenancy.test_key)
        for key in (other.test_key, other.live_key, tenancy.live_key):
            for method, path in _routes():
                if "{user_id}" not in path:
                    continue
                url = _concrete(path, user_id=user["id"])
                response = client.request(method, url, headers=bearer(key.secret))
                assert _is_problem(response, 404), (method, path, response.text)
        still_there = client.get(f"/v1/users/{user['id']}", headers=bearer(tenancy.test_key.secret))
    assert still_there.status_code == 200


def test_malformed_bodies_are_refused_on_every_post(database_url: str) -> None:
    tenancy = new_tenancy(database_url)
    with users_client(database_url, users_config()) as client:
        user = sign_up(client, tenancy.test_key)
        tokens = signed_in(client, tenancy, email="bob@example.com")
        for method, path in _routes():
            if method != "POST" or path.endswith(("/revoke", "/revoke-all", "/logout", "/options")):
                continue
            if path in ("/v1/me/mfa/totp", "/v1/me/devices/verify-signature"):
                continue  # no body
            credential = (
                tenancy.test_key.secret if path.startswith("/v1/users") else tokens["access_token"]
            )
            url = _concrete(path, user_id=user["id"])
            headers = {**bearer(credential), "Content-Type": "application/json"}
            for body in (b"{", b"[]", b'"text"', b'{"unexpected": ' + b"1" * 5000 + b"}"):
                response = client.post(url, content=body, headers=headers)
                # 400 for what is no JSON at all (a 5,000-digit number), 422 for the rest.
                refused = _is_problem(response, 422) or _is_problem(response, 400)
                assert refused, (path, body[:10], response.text)


def test_openapi_names_the_scheme_of_every_route(database_url: str) -> None:
    with users_client(database_url, users_config()) as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["UserAccessToken"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            security = operation.get("security")
            if (method.upper(), path) in PUBLIC_ROUTES:
                assert security is None, path
            elif path.startswith("/v1/me"):
                assert security == [{"UserAccessToken": []}], path
            else:
                assert security == [{"ApiKey": []}], path


def _user_table_differences(database_url: str) -> list[object]:
    return schema_differences(database_url, ("identity_user",))


def test_migration_0005_creates_the_modelled_tables_and_downgrades(
    isolated_database_url: str,
) -> None:
    assert _user_table_differences(isolated_database_url) == []
    command.downgrade(alembic_config(isolated_database_url), "0004_security_events")
    assert len(_user_table_differences(isolated_database_url)) >= 11  # every table gone
    upgrade(isolated_database_url)
    assert _user_table_differences(isolated_database_url) == []

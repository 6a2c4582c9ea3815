"""Every operators and approvals route: guarded (sign-in is the one public route), documented
with its scheme, and refusing anonymous callers, API keys and other tenants' operators."""

from __future__ import annotations

from typing import Any

from billfold.identity.operators.permissions import Role
from identity.identity_support import bearer
from identity.operators.operators_support import new_tenant, operator, operator_client

PUBLIC = {("post", "/v1/operators/login")}
API_KEY_TOO = {("post", "/v1/operators")}


def _operations(paths: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for path, item in paths.items()
        if path.startswith(("/v1/operators", "/v1/approvals"))
        for method in item
    )


def _concrete(path: str, *, operator_id: str, approval_id: str, entry_id: str) -> str:
    return (
        path.replace("{operator_id}", operator_id)
        .replace("{approval_id}", approval_id)
        .replace("{entry_id}", entry_id)
    )


def test_every_route_is_guarded_and_documented(database_url: str) -> None:
    home = new_tenant(database_url)
    away = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=home.tenant.id, roles=[Role.ADMIN])
    outsider = operator(
        database_url, tenant_id=away, roles=[Role.ADMIN, Role.FINANCE, Role.COMPLIANCE_OFFICER]
    )
    with operator_client(database_url) as client:
        paths = client.get("/openapi.json").json()["paths"]
        operations = _operations(paths)
        assert len(operations) == 18
        made = client.post(
            "/v1/approvals",
            json={"action_type": "key_rotation", "reason": "r", "payload": {"key_id": "pii"}},
            headers=admin.headers,
        ).json()["id"]
        entries = client.get("/v1/operators/audit/entries", headers=admin.headers).json()
        entry_id = entries["items"][0]["id"]
        for method, path in operations:
            security = paths[path][method].get("security")
            if (method, path) in PUBLIC:
                assert security is None, path
                continue
            expected = [{"OperatorSession": []}]
            if (method, path) in API_KEY_TOO:
                expected = [{"OperatorSession": []}, {"ApiKey": []}]
            assert security == expected, (method, path)
            concrete = _concrete(
                path, operator_id=admin.public_id, approval_id=made, entry_id=entry_id
            )
            for headers in ({}, bearer(home.live_key.secret), {"Authorization": "Bearer bfo_x"}):
                if headers and (method, path) in API_KEY_TOO:
                    continue  # a live admin key may create operators: tested elsewhere
                response = client.request(method, concrete, json={}, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["content-type"] == "application/problem+json"
            if (method, path) == ("post", "/v1/operators/logout"):
                continue  # it would end the outsider's session; it touches only the caller's
            # Another tenant's operator, holding every permission these routes ask for,
            # reaches nothing of this tenant's.
            response = client.request(
                method, concrete, json=_body(method, path), headers=outsider.headers
            )
            _assert_not_reached(method, path, response, home=f"ten_{home.tenant.id.hex}")
        after = client.get(f"/v1/approvals/{made}", headers=admin.headers).json()
        me = client.get("/v1/operators/me", headers=admin.headers).json()
    assert after["status"] == "pending"
    assert me["roles"] == ["admin"] and me["status"] == "active"


def _body(method: str, path: str) -> dict[str, Any] | None:
    if path.endswith("/roles"):
        return {"roles": ["support"]}
    if path.endswith("/refuse"):
        return {"note": "no"}
    return {}


def _assert_not_reached(method: str, path: str, response: Any, *, home: str) -> None:
    route = (method, path)
    if "{" in path:
        assert response.status_code == 404, (route, response.text)
        return
    # Routes about the caller itself, listings of its own tenant, or a body it must send.
    if route in {
        ("get", "/v1/operators"),
        ("get", "/v1/approvals"),
        ("get", "/v1/operators/audit/entries"),
    }:
        assert response.status_code == 200, (route, response.text)
        assert all(item["tenant_id"] != home for item in response.json()["items"])
        return
    if route == ("get", "/v1/operators/audit/checkpoints/latest"):
        assert response.status_code == 404, (route, response.text)  # its own has none yet
        return
    assert response.status_code in {200, 204, 422}, (route, response.text)

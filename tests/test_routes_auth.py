"""Every registered route refuses an anonymous caller, and every tenant-scoped route refuses
another tenant's caller, except the public routes listed here on purpose."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.identity.users.router import PUBLIC_ROUTES as USER_SIGN_IN_ROUTES
from billfold.keys.router import PUBLIC_ROUTES as PUBLIC_KEY_ROUTES
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key

PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/operators/login"),
    *USER_SIGN_IN_ROUTES,
    *PUBLIC_KEY_ROUTES,
    # A provider's notification: its HMAC signature over the body is the credential.
    ("POST", "/v1/connectors/{provider}/notifications"),
}
"""Liveness, readiness, sign-in routes whose body carries the credential, the platform's
public signing keys (JWKS: public keys, for verifiers without a credential), and providers'
signed notifications."""

_PATH_PARAMETER = re.compile(r"{([a-z_]+)}")
_PREFIXES = {
    "account_id": "acc",
    "transfer_id": "txf",
    "api_key_id": "key",
    "user_id": "usr",
    "session_id": "ses",
    "device_id": "dev",
    "step_up_id": "stp",
    "operator_id": "opr",
    "approval_id": "apr",
    "schedule_id": "fsc",
    "quote_id": "fxq",
    "entry_id": "aud",
    "checkpoint_id": "ckp",
    "endpoint_id": "whe",
    "event_id": "evt",
    "payment_id": "pay",
    "merchant_id": "mer",
    "dispute_id": "dsp",
    "request_id": "req",
    "rule_id": "rrl",
    "decision_id": "rdc",
    "case_id": "rcs",
    "response_id": "rrs",
    "model_id": "rmv",
}


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation the application serves, from its OpenAPI document (FastAPI mounts
    included routers lazily, so the document is the complete list)."""
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


def _concrete(path: str, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return ids.get(name) or f"{_PREFIXES.get(name, 'x')}_{uuid.uuid4().hex}"

    return _PATH_PARAMETER.sub(fill, path)


def test_public_routes_are_exactly_the_listed_ones(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        routes = set(_api_routes(client))
    assert routes >= PUBLIC_ROUTES, "a listed public route no longer exists"


def test_every_protected_operation_documents_its_credentials(database_url: str) -> None:
    """A client generated from the OpenAPI document learns which credential each operation
    takes from its `security`: every route but the public ones declares one, and the public
    ones declare none."""
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        document = client.get("/openapi.json").json()
    schemes = set(document["components"]["securitySchemes"])
    undeclared = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            requirements = operation.get("security") or []
            assert all(set(r) <= schemes for r in requirements), (method, path, requirements)
            if not requirements:
                undeclared.add((method.upper(), path))
    assert undeclared == PUBLIC_ROUTES


def test_every_route_refuses_an_anonymous_caller(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        for method, path in _api_routes(client):
            if (method, path) in PUBLIC_ROUTES:
                continue
            response = client.request(method, _concrete(path, {}), json={})
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["content-type"] == "application/problem+json"


def test_tenant_routes_refuse_another_tenants_caller(database_url: str) -> None:
    owner = bootstrap_tenant(database_url, name="Owner")
    intruder = bootstrap_tenant(database_url, name="Intruder")
    every_scope = list(Scope)
    owner_key = create_key(database_url, tenant_id=owner.tenant.id, scopes=every_scope).secret
    intruder_key = create_key(database_url, tenant_id=intruder.tenant.id, scopes=every_scope).secret
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        as_owner = {"Authorization": f"Bearer {owner_key}"}
        account = client.post(
            "/v1/accounts", json={"ledger": "USD", "code": 1}, headers=as_owner
        ).json()
        ids = {"account_id": account["id"], "api_key_id": f"key_{owner.test_key.api_key.id.hex}"}
        as_intruder = {"Authorization": f"Bearer {intruder_key}"}
        for method, path in _api_routes(client):
            if (method, path) in PUBLIC_ROUTES or not any(name in path for name in ids):
                continue
            response = client.request(method, _concrete(path, ids), json={}, headers=as_intruder)
            assert response.status_code in {403, 404, 422}, (method, path, response.status_code)
        owners_view = client.get(f"/v1/accounts/{account['id']}", headers=as_owner)
        assert owners_view.status_code == 200
        assert owners_view.json()["credits_posted"] == "0"

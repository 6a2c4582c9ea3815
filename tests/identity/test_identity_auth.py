"""The authentication dependency: one 401 for every bad key, 403 for a missing scope."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billfold.identity.credentials import mint_api_key
from billfold.identity.models import Tenant
from billfold.identity.service import BootstrappedTenant, CreatedApiKey
from billfold.identity.types import Mode, Scope
from billfold.kit.ids import new_id
from identity.identity_support import (
    api_client,
    bearer,
    bootstrap_tenant,
    create_key,
    run_in_unit_of_work,
)

HOUR_NS = 3600 * 1_000_000_000
PUBLIC_PATHS = {"/healthz", "/readyz"}
NO_BEARER_TOKEN = {"missing", "empty", "not bearer", "bearer without key", "two headers"}
"""The cases of `_bad_authorizations` that present no (single) bearer token."""


def _bad_authorizations(
    database_url: str, tenant: BootstrappedTenant
) -> tuple[dict[str, list[str]], CreatedApiKey]:
    """Authorization header values by what is wrong with them (an empty list: no header),
    and the key the test must revoke before presenting it."""
    good = tenant.test_key.secret
    revoked = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.TENANT_ADMIN])
    expired = create_key(
        database_url,
        tenant_id=tenant.tenant.id,
        scopes=[Scope.TENANT_ADMIN],
        now_ns=time.time_ns() - 2 * HOUR_NS,
        expires_at_ns=time.time_ns() - HOUR_NS,
    )
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    return {
        "missing": [],
        "empty": [""],
        "not bearer": [f"Basic {good}"],
        "bearer without key": ["Bearer"],
        "malformed": ["Bearer not-a-key"],
        "two headers": [f"Bearer {good}", f"Bearer {good}"],
        "unknown": [f"Bearer {mint_api_key(mode=Mode.TEST, api_key_id=new_id())}"],
        "tampered secret": [f"Bearer {tampered}"],
        "wrong mode prefix": [f"Bearer {good.replace('bf_test_', 'bf_live_', 1)}"],
        "revoked": [f"Bearer {revoked.secret}"],
        "expired": [f"Bearer {expired.secret}"],
        "oversized": ["Bearer " + "a" * 10_000],
    }, revoked


def test_every_bad_key_gets_the_same_401(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url)
    cases, revoked = _bad_authorizations(database_url, tenant)
    with api_client(database_url) as client:
        revoke_path = f"/v1/api-keys/key_{revoked.api_key.id.hex}/revoke"
        assert client.post(revoke_path, headers=bearer(tenant.test_key.secret)).status_code == 200
        good = client.get("/v1/api-keys", headers=bearer(tenant.test_key.secret))
        responses = {
            case: client.get("/v1/api-keys", headers=[("Authorization", value) for value in values])
            for case, values in cases.items()
        }
    assert good.status_code == 200
    bodies = set()
    for case, response in responses.items():
        assert response.status_code == 401, case
        assert response.headers["content-type"] == "application/problem+json", case
        # RFC 6750 section 3.1: a request that presented a bearer token is told it is
        # invalid (whichever way); one that presented none gets the bare challenge.
        challenge = 'Bearer realm="billfold"'
        if case not in NO_BEARER_TOKEN:
            challenge += ', error="invalid_token"'
        assert response.headers["www-authenticate"] == challenge, case
        assert response.json()["code"] == "unauthorized", case
        bodies.add(response.content)
    assert len(bodies) == 1, "every failure must look exactly alike"


def test_a_key_is_found_however_the_header_is_spaced(database_url: str) -> None:
    """RFC 6750 section 2.1: `"Bearer" 1*SP b64token`, any number of spaces after the
    scheme; RFC 9110 section 5.5: whitespace around a field value is not part of it."""
    tenant = bootstrap_tenant(database_url)
    good = tenant.test_key.secret
    spellings = [f"Bearer  {good}", f"Bearer   {good}", f"Bearer {good} ", f"bearer {good}  "]
    with api_client(database_url) as client:
        responses = [
            client.get("/v1/api-keys", headers=[("Authorization", value)]) for value in spellings
        ]
    assert [response.status_code for response in responses] == [200] * len(spellings)


def test_a_suspended_tenants_keys_authenticate_nothing(database_url: str) -> None:

    tenant = bootstrap_tenant(database_url)

    async def suspend(session: object) -> None:
        row = await session.get(Tenant, tenant.tenant.id)  # type: ignore[attr-defined]
        row.status = "suspended"

    run_in_unit_of_work(database_url, suspend)
    with api_client(database_url) as client:
        response = client.get("/v1/api-keys", headers=bearer(tenant.test_key.secret))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_a_missing_scope_is_a_403(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url)
    reader = create_key(
        database_url, tenant_id=tenant.tenant.id, scopes=[Scope.LEDGER_READ, Scope.USERS_ADMIN]
    )
    with api_client(database_url) as client:
        listing = client.get("/v1/api-keys", headers=bearer(reader.secret))
        creating = client.post(
            "/v1/api-keys",
            json={"name": "more", "scopes": ["tenant:admin"]},
            headers=bearer(reader.secret),
        )
    for response in (listing, creating):
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "insufficient_scope"
        assert response.json()["required_scopes"] == ["tenant:admin"]
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_authenticating_records_when_the_key_was_last_used(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url)
    key_path = f"/v1/api-keys/key_{tenant.test_key.api_key.id.hex}"
    before = datetime.now(UTC).replace(microsecond=0)
    with api_client(database_url) as client:
        first = client.get(key_path, headers=bearer(tenant.test_key.secret)).json()
        second = client.get(key_path, headers=bearer(tenant.test_key.secret)).json()
    assert tenant.test_key.api_key.last_used_at is None
    assert datetime.fromisoformat(first["last_used_at"]) >= before
    # Within the minute, a second request does not write it again.
    assert second["last_used_at"] == first["last_used_at"]


def test_every_api_key_route_requires_a_key(tmp_path: Path) -> None:
    # FastAPI nests included routers, so the OpenAPI document is the flat list of operations.
    with api_client(f"sqlite:///{tmp_path}/routes.db") as client:
        paths = client.get("/openapi.json").json()["paths"]
        operations = [(method, path) for path, item in paths.items() for method in item]
        guarded = [(method, path) for method, path in operations if path not in PUBLIC_PATHS]
        assert {("get", "/healthz"), ("get", "/readyz")} <= set(operations) - set(guarded)
        api_key_operations = [(m, p) for m, p in guarded if p.startswith("/v1/api-keys")]
        assert len(api_key_operations) == 4
        for method, path in api_key_operations:
            assert paths[path][method]["security"] == [{"ApiKey": []}]
            concrete = path.replace("{api_key_id}", "key_" + "0" * 32)
            response = client.request(method, concrete, json={})
            assert response.status_code == 401, (method, path)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_openapi_documents_the_scheme_and_the_problems(tmp_path: Path) -> None:
    with api_client(f"sqlite:///{tmp_path}/openapi.db") as client:
        document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    create = document["paths"]["/v1/api-keys"]["post"]
    assert create["security"] == [{"ApiKey": []}]
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ApiKeyCreated"
    }
    for status in ("401", "403", "409", "422"):
        assert list(create["responses"][status]["content"]) == ["application/problem+json"]
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize("scope", list(Scope))
def test_scopes_are_a_fixed_documented_set(scope: Scope) -> None:
    assert scope.value in {
        "ledger:read",
        "ledger:write",
        "payments:read",
        "payments:write",
        "fees:read",
        "fees:write",
        "fx:read",
        "fx:write",
        "wallets:read",
        "users:admin",
        "tenant:admin",
        "pii:write",
        "pii:read",
        "pii:detokenize",
        "audit:read",
        "events:read",
        "webhooks:write",
        "risk:read",
        "risk:write",
    }

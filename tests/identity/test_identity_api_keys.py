"""API keys over HTTP on both backends: created once, stored hashed, scoped to the tenant."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode, Scope
from billfold.kit.ids import parse_id
from identity.identity_support import (
    api_client,
    bearer,
    bootstrap_tenant,
    create_key,
    read_row,
    run_in_unit_of_work,
)


def test_a_created_key_shows_its_secret_once_and_is_stored_only_as_a_hash(
    database_url: str,
) -> None:
    admin = bootstrap_tenant(database_url).test_key.secret
    with api_client(database_url) as client:
        created = client.post(
            "/v1/api-keys",
            json={"name": "reporting", "scopes": ["ledger:read", "payments:read"]},
            headers=bearer(admin),
        )
        fetched = client.get(f"/v1/api-keys/{created.json()['id']}", headers=bearer(admin))
        listed = client.get("/v1/api-keys", headers=bearer(admin))
        works = client.get("/v1/api-keys", headers=bearer(created.json()["secret"]))
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith(body["prefix"] + "_")
    assert body["prefix"].startswith("bf_test_")
    assert (body["mode"], body["scopes"]) == ("test", ["ledger:read", "payments:read"])
    assert fetched.status_code == 200
    assert "secret" not in fetched.json()
    assert secret not in fetched.text
    assert secret not in listed.text
    assert "secret" not in listed.text  # neither the secret nor its hash is ever listed
    row = read_row(database_url, table="identity_api_keys", row_id=parse_id("key", body["id"]))
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    # The random part is what follows the prefix: base64url may put "_" inside it, so
    # splitting at the last "_" could leave a few characters that any column may contain.
    secret_part = secret.removeprefix(body["prefix"] + "_")
    assert len(secret_part) == 43  # secrets.token_urlsafe(32)
    assert all(secret_part not in str(value) for value in row.values())
    assert works.status_code == 403  # genuine key, lacking tenant:admin


def test_a_retried_creation_neither_makes_a_second_key_nor_shows_the_secret_again(
    database_url: str,
) -> None:
    """With an Idempotency-Key (the SDK sends one on every POST), the secret is kept
    nowhere: the idempotency record holds that the key was made, not the response."""
    admin = bootstrap_tenant(database_url).test_key.secret
    request = {"name": "retried", "scopes": ["ledger:read"]}
    headers = {**bearer(admin), "Idempotency-Key": "create-retried"}
    with api_client(database_url) as client:
        created = client.post("/v1/api-keys", json=request, headers=headers)
        retried = client.post("/v1/api-keys", json=request, headers=headers)
        listed = client.get("/v1/api-keys?limit=100", headers=bearer(admin)).json()["items"]
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    secret = created.json()["secret"]
    assert retried.status_code == 409
    assert retried.json()["code"] == "idempotency_response_withheld"
    assert secret not in retried.text
    assert [key["name"] for key in listed].count("retried") == 1

    async def stored(session: AsyncSession) -> list[bytes]:
        rows = await session.execute(text("SELECT response_body FROM idempotency_keys"))
        return [bytes(body) for (body,) in rows if body is not None]

    assert not any(secret.encode() in body for body in run_in_unit_of_work(database_url, stored))


def test_idempotency_keys_are_per_credential_whatever_the_schemes_spelling(
    database_url: str,
) -> None:
    """RFC 9110 section 11.1: the scheme is case-insensitive, so `Bearer`, `bearer` and
    `BEARER` present one credential and share its idempotency keys."""
    tenant = bootstrap_tenant(database_url)
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.LEDGER_WRITE]).secret
    account = {"ledger": "USD", "code": 7}
    with api_client(database_url) as client:
        answers = [
            client.post(
                "/v1/accounts",
                json=account,
                headers={"Authorization": f"{scheme} {key}", "Idempotency-Key": "one-account"},
            )
            for scheme in ("Bearer", "bearer", "BEARER")
        ]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert [answer.headers.get("idempotent-replayed") for answer in answers] == [
        None,
        "true",
        "true",
    ]


def test_keys_are_listed_in_pages_by_cursor(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url)
    made = [
        create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.LEDGER_READ])
        for _ in range(4)
    ]
    seen: list[str] = []
    with api_client(database_url) as client:
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/api-keys", params=params, headers=bearer(tenant.test_key.secret))
            assert page.status_code == 200
            assert len(page.json()["items"]) <= 2
            seen += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        bad_cursor = client.get(
            "/v1/api-keys", params={"cursor": "bm9wZQ"}, headers=bearer(tenant.test_key.secret)
        )
    expected = [tenant.test_key.api_key.id, *(key.api_key.id for key in made)]
    assert seen == [f"key_{key_id.hex}" for key_id in expected]
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["code"] == "invalid_cursor"


def test_revoking_a_key_stops_it_at_once_and_revoking_again_changes_nothing(
    database_url: str,
) -> None:
    tenant = bootstrap_tenant(database_url)
    victim = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.TENANT_ADMIN])
    victim_id = f"key_{victim.api_key.id.hex}"
    admin = bearer(tenant.test_key.secret)
    with api_client(database_url) as client:
        assert client.get("/v1/api-keys", headers=bearer(victim.secret)).status_code == 200
        first = client.post(f"/v1/api-keys/{victim_id}/revoke", headers=admin)
        second = client.post(f"/v1/api-keys/{victim_id}/revoke", headers=admin)
        refused = client.get("/v1/api-keys", headers=bearer(victim.secret))
    assert first.status_code == second.status_code == 200
    assert first.json()["revoked_at"] is not None
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    assert refused.status_code == 401


def test_another_tenants_keys_are_as_absent_as_missing_ones(database_url: str) -> None:
    tenant_a = bootstrap_tenant(database_url, "A")
    tenant_b = bootstrap_tenant(database_url, "B")
    a_key_id = f"key_{tenant_a.test_key.api_key.id.hex}"
    missing_id = "key_" + "0" * 32
    as_b = bearer(tenant_b.test_key.secret)
    with api_client(database_url) as client:
        responses = {
            "get": client.get(f"/v1/api-keys/{a_key_id}", headers=as_b),
            "revoke": client.post(f"/v1/api-keys/{a_key_id}/revoke", headers=as_b),
            "get_missing": client.get(f"/v1/api-keys/{missing_id}", headers=as_b),
            "revoke_missing": client.post(f"/v1/api-keys/{missing_id}/revoke", headers=as_b),
        }
        listed = client.get("/v1/api-keys", headers=as_b)
        still_works = client.get("/v1/api-keys", headers=bearer(tenant_a.test_key.secret))
    for response in responses.values():
        assert response.status_code == 404
        body = response.json()
        del body["instance"]
        assert body == {
            "type": "https://billfold.dev/problems/api_key_not_found",
            "title": "API key not found",
            "status": 404,
            "code": "api_key_not_found",
        }
    assert [item["id"] for item in listed.json()["items"]] == [
        f"key_{tenant_b.test_key.api_key.id.hex}"
    ]
    assert still_works.status_code == 200  # B's revoke attempt did nothing


def test_test_and_live_keys_never_see_each_other(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url)
    live_id = f"key_{tenant.live_key.api_key.id.hex}"
    as_test = bearer(tenant.test_key.secret)
    with api_client(database_url) as client:
        hidden = client.get(f"/v1/api-keys/{live_id}", headers=as_test)
        not_revoked = client.post(f"/v1/api-keys/{live_id}/revoke", headers=as_test)
        minted = client.post(
            "/v1/api-keys",
            json={"name": "escalate", "mode": "live", "scopes": ["ledger:write"]},
            headers=as_test,
        )
        listed = client.get("/v1/api-keys", headers=as_test)
        live_view = client.get(f"/v1/api-keys/{live_id}", headers=bearer(tenant.live_key.secret))
    assert hidden.status_code == not_revoked.status_code == 404
    assert minted.status_code == 403
    assert minted.json()["code"] == "mode_mismatch"
    assert {item["mode"] for item in listed.json()["items"]} == {"test"}
    assert live_view.status_code == 200
    assert live_view.json()["revoked_at"] is None
    assert live_view.json()["mode"] == Mode.LIVE


def test_creation_validates_its_body(database_url: str) -> None:
    admin = bearer(bootstrap_tenant(database_url).test_key.secret)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    far = (datetime.now(UTC) + timedelta(days=3700)).isoformat()
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    with api_client(database_url) as client:

        def create(**body: object) -> tuple[int, str]:
            response = client.post("/v1/api-keys", json=body, headers=admin)
            return response.status_code, response.json().get("code", "")

        assert create(name="x", scopes=["ledger:read"], expires_at=past) == (422, "invalid_expiry")
        assert create(name="x", scopes=["ledger:read"], expires_at=far) == (422, "invalid_expiry")
        assert create(name="x", scopes=["nope:admin"]) == (422, "validation_failed")
        assert create(name="x", scopes=[]) == (422, "validation_failed")
        assert create(name="   ", scopes=["ledger:read"]) == (422, "invalid_name")
        assert create(name="x", scopes=["ledger:read"], extra=1) == (422, "validation_failed")
        ok = client.post(
            "/v1/api-keys",
            json={"name": "x", "scopes": ["ledger:read"], "expires_at": soon},
            headers=admin,
        )
        assert ok.status_code == 201
        assert ok.json()["expires_at"] is not None
        assert client.get("/v1/api-keys/key_nothex", headers=admin).json()["code"] == "invalid_id"


def test_a_test_key_is_refused_a_live_only_scope_and_a_live_key_is_not(database_url: str) -> None:
    """The audit routes accept only live keys, so `audit:read` on a `bf_test_` key would be a
    grant that can never work: it is refused when the key is made, and nothing is made."""
    tenant = bootstrap_tenant(database_url)
    as_test, as_live = bearer(tenant.test_key.secret), bearer(tenant.live_key.secret)
    body = {"name": "auditor", "scopes": ["ledger:read", "audit:read"]}
    with api_client(database_url) as client:
        refused = client.post("/v1/api-keys", json=body, headers=as_test)
        listed = client.get("/v1/api-keys", headers=as_test).json()["items"]
        made = client.post("/v1/api-keys", json=body, headers=as_live)
        reads = client.get("/v1/audit/entries", headers=bearer(made.json()["secret"]))
        document = client.get("/openapi.json").json()
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["code"], problem["scopes"], problem["mode"]) == (
        "live_only_scope",
        ["audit:read"],
        "test",
    )
    assert "live keys" in problem["detail"]
    assert [item["id"] for item in listed] == [f"key_{tenant.test_key.api_key.id.hex}"]
    assert made.status_code == 201, made.text
    assert (made.json()["mode"], made.json()["scopes"]) == ("live", ["audit:read", "ledger:read"])
    assert reads.status_code == 200, reads.text
    responses = document["paths"]["/v1/api-keys"]["post"]["responses"]
    assert "application/problem+json" in responses["422"]["content"]

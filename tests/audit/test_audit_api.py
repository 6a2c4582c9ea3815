"""The audit log over HTTP: a live audit:read key reads its tenant's chain, checkpoints and
inclusion proofs, and nobody else's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from audit.audit_support import checkpoint_chain, opened, settings, tamper_chain
from billfold.app import create_app
from billfold.audit import merkle
from billfold.audit.signing import verify_signature
from billfold.identity.types import Mode, Scope
from identity.identity_support import bearer, bootstrap_tenant, create_key


@contextmanager
def _client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(database_url))) as client:
        yield client


def _checkpoint(database_url: str, tenant_id: object) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await checkpoint_chain(unit_of_work, tenant_id)  # type: ignore[arg-type]

    asyncio.run(run())


def _audit_key(database_url: str, tenant_id: object, mode: Mode = Mode.LIVE) -> str:
    return create_key(
        database_url,
        tenant_id=tenant_id,
        scopes=[Scope.AUDIT_READ],
        mode=mode,  # type: ignore[arg-type]
    ).secret


def test_a_tenant_reads_its_chain_page_by_page(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, name="Audited")
    key = _audit_key(database_url, tenant.tenant.id)
    with _client(database_url) as client:
        first = client.get("/v1/audit/entries?limit=2", headers=bearer(key))
        assert first.status_code == 200, first.text
        body = first.json()
        assert [item["sequence"] for item in body["items"]] == [1, 2]
        assert body["items"][0]["action"] == "tenant.created"
        assert body["items"][0]["tenant_id"] == f"ten_{tenant.tenant.id.hex}"
        rest = client.get(
            f"/v1/audit/entries?cursor={body['next_cursor']}", headers=bearer(key)
        ).json()
        actions = [item["action"] for item in rest["items"]]
        # bootstrap: tenant, its two keys; then the audit key made above
        assert actions == ["api_key.created", "api_key.created"]
        assert rest["next_cursor"] is None
        one = client.get(f"/v1/audit/entries/{body['items'][1]['id']}", headers=bearer(key))
        assert one.json() == body["items"][1]


def test_a_checkpoint_and_an_inclusion_proof_verify(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, name="Proven")
    key = _audit_key(database_url, tenant.tenant.id)
    with _client(database_url) as client:
        entries = client.get("/v1/audit/entries", headers=bearer(key)).json()["items"]
        early = client.get(f"/v1/audit/entries/{entries[0]['id']}/proof", headers=bearer(key))
        assert early.status_code == 409
        assert early.json()["code"] == "entry_not_checkpointed"
        assert client.get("/v1/audit/checkpoints/latest", headers=bearer(key)).status_code == 404
        _checkpoint(database_url, tenant.tenant.id)
        latest = client.get("/v1/audit/checkpoints/latest", headers=bearer(key)).json()
        same = client.get(f"/v1/audit/checkpoints/{latest['id']}", headers=bearer(key)).json()
        assert same == latest
        assert verify_signature(
            public_key=bytes.fromhex(latest["public_key"]),
            signature=bytes.fromhex(latest["signature"]),
            message=latest["message"].encode(),
        )
        proof = client.get(f"/v1/audit/entries/{entries[2]['id']}/proof", headers=bearer(key))
    assert proof.status_code == 200, proof.text
    document = proof.json()
    entry_hash = bytes.fromhex(document["entry"]["entry_hash"])
    assert merkle.verify_inclusion(
        leaf=merkle.leaf_hash(entry_hash),
        index=document["leaf_index"],
        tree_size=document["tree_size"],
        proof=[bytes.fromhex(step) for step in document["inclusion_path"]],
        root=bytes.fromhex(document["checkpoint"]["root_hash"]),
    )


def test_another_tenant_sees_nothing(database_url: str) -> None:
    owner = bootstrap_tenant(database_url, name="Owner")
    intruder = bootstrap_tenant(database_url, name="Intruder")
    owner_key = _audit_key(database_url, owner.tenant.id)
    intruder_key = _audit_key(database_url, intruder.tenant.id)
    _checkpoint(database_url, owner.tenant.id)
    with _client(database_url) as client:
        entry = client.get("/v1/audit/entries", headers=bearer(owner_key)).json()["items"][0]
        checkpoint = client.get("/v1/audit/checkpoints/latest", headers=bearer(owner_key)).json()
        for path in (
            f"/v1/audit/entries/{entry['id']}",
            f"/v1/audit/entries/{entry['id']}/proof",
            f"/v1/audit/checkpoints/{checkpoint['id']}",
        ):
            response = client.get(path, headers=bearer(intruder_key))
            assert response.status_code == 404, path
        listed = client.get("/v1/audit/entries", headers=bearer(intruder_key)).json()["items"]
        assert entry["id"] not in {item["id"] for item in listed}
        assert all(item["tenant_id"] == f"ten_{intruder.tenant.id.hex}" for item in listed)


def test_test_keys_and_keys_without_the_scope_are_refused(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, name="Careful")
    test_key = _audit_key(database_url, tenant.tenant.id, mode=Mode.TEST)
    with _client(database_url) as client:
        sandbox = client.get("/v1/audit/entries", headers=bearer(test_key))
        assert sandbox.status_code == 403
        assert sandbox.json()["code"] == "live_key_required"
        admin = client.get("/v1/audit/entries", headers=bearer(tenant.live_key.secret))
        assert admin.status_code == 403
        assert admin.json()["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/audit/entries/not-an-id", 400),
        ("/v1/audit/entries/ckp_0123456789abcdef0123456789abcdef", 400),
        ("/v1/audit/entries/aud_0123456789abcdef0123456789abcdef", 404),
        ("/v1/audit/entries/aud_0123456789abcdef0123456789abcdef/proof", 404),
        ("/v1/audit/checkpoints/aud_0123456789abcdef0123456789abcdef", 400),
        ("/v1/audit/entries?cursor=bm9wZQ", 400),
        ("/v1/audit/entries?cursor=WyJhIl0", 400),
        ("/v1/audit/entries?cursor=WzkyMjMzNzIwMzY4NTQ3NzU4MDhd", 400),  # [2**63]: past a BIGINT
        ("/v1/audit/entries?limit=0", 422),
        ("/v1/audit/entries?limit=501", 422),
    ],
)
def test_bad_input_is_a_clear_client_error(database_url: str, path: str, status: int) -> None:
    tenant = bootstrap_tenant(database_url, name="Sloppy")
    key = _audit_key(database_url, tenant.tenant.id)
    with _client(database_url) as client:
        response = client.get(path, headers=bearer(key))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_the_request_origin_is_recorded(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, name="Origin")
    key = _audit_key(database_url, tenant.tenant.id)
    with _client(database_url) as client:
        created = client.post(
            "/v1/api-keys",
            json={"name": "from a browser", "scopes": ["ledger:read"]},
            headers={**bearer(tenant.live_key.secret), "User-Agent": "Mozilla/5.0 (\x01test)"},
        )
        assert created.status_code == 201, created.text
        entries = client.get("/v1/audit/entries", headers=bearer(key)).json()["items"]
    last = entries[-1]
    assert last["action"] == "api_key.created"
    assert last["user_agent"] == "Mozilla/5.0 (test)"
    assert last["actor_type"] == "api_key"


def test_a_client_address_with_a_long_ipv6_zone_is_recorded_without_it(database_url: str) -> None:
    """A zone (``%…``) is free text: one longer than the column is dropped, and the act it
    came with still succeeds (PostgreSQL refused the row, so every audited act failed)."""
    tenant = bootstrap_tenant(database_url, name="Zoned")
    key = _audit_key(database_url, tenant.tenant.id)
    zoned = TestClient(create_app(settings(database_url)), client=("fe80::1%" + "z" * 60, 1))
    with zoned as client:
        created = client.post(
            "/v1/api-keys",
            json={"name": "over a link-local address", "scopes": ["ledger:read"]},
            headers=bearer(tenant.live_key.secret),
        )
        assert created.status_code == 201, created.text
        entries = client.get("/v1/audit/entries", headers=bearer(key)).json()["items"]
    assert (entries[-1]["action"], entries[-1]["source_ip"]) == ("api_key.created", "fe80::1")


@pytest.mark.parametrize(
    ("statement", "path"),
    [
        ("UPDATE audit_entries SET occurred_at = -1 WHERE chain_id = :c", "entries/{id}/proof"),
        ("UPDATE audit_checkpoints SET key_id = 'a b' WHERE chain_id = :c", "checkpoints/latest"),
        ("UPDATE audit_checkpoints SET created_at = -1 WHERE chain_id = :c", "entries/{id}/proof"),
    ],
    ids=["entry-time", "checkpoint-key", "checkpoint-time"],
)
def test_rows_no_encoding_can_come_from_are_a_broken_chain(
    database_url: str, statement: str, path: str
) -> None:
    """Values only tampering writes (a time below zero, a key id with a space) are a 409
    ``audit_chain_broken``, as any other tampering is, not a server error."""
    tenant = bootstrap_tenant(database_url, name="Tampered")
    key = _audit_key(database_url, tenant.tenant.id)
    _checkpoint(database_url, tenant.tenant.id)
    asyncio.run(tamper_chain(database_url, statement, tenant.tenant.id))
    with _client(database_url) as client:
        entry = client.get("/v1/audit/entries", headers=bearer(key)).json()["items"][0]
        response = client.get(f"/v1/audit/{path.format(id=entry['id'])}", headers=bearer(key))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "audit_chain_broken"

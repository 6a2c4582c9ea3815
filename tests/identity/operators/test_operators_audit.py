"""Operators with audit.read (admin, compliance officer) read their own tenant's audit log,
checkpoints and proofs; others are refused, and no tenant sees another's."""

from __future__ import annotations

import asyncio
import uuid

from audit.audit_support import checkpoint_chain, opened, tamper_chain
from billfold.identity.operators.permissions import Role
from identity.operators.operators_support import new_tenant, operator, operator_client


def _checkpoint(database_url: str, tenant_id: uuid.UUID) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await checkpoint_chain(unit_of_work, tenant_id)

    asyncio.run(run())


def test_a_compliance_officer_reads_and_proves_the_tenants_log(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    officer = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    with operator_client(database_url) as client:
        listed = client.get("/v1/operators/audit/entries?limit=500", headers=officer.headers)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert items[0]["action"] == "tenant.created"
        assert {item["tenant_id"] for item in items} == {f"ten_{tenant_id.hex}"}
        refused = client.get("/v1/operators/audit/entries", headers=support.headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "permission_denied"
        early = client.get("/v1/operators/audit/checkpoints/latest", headers=officer.headers)
        assert early.status_code == 404
        _checkpoint(database_url, tenant_id)
        latest = client.get("/v1/operators/audit/checkpoints/latest", headers=officer.headers)
        assert latest.status_code == 200
        proof = client.get(
            f"/v1/operators/audit/entries/{items[0]['id']}/proof", headers=officer.headers
        )
        assert proof.status_code == 200, proof.text
        assert proof.json()["checkpoint"]["id"] == latest.json()["id"]
        malformed = client.get("/v1/operators/audit/entries/nope/proof", headers=officer.headers)
        assert malformed.status_code == 400


def test_another_tenants_operator_sees_nothing(database_url: str) -> None:
    owner_id = new_tenant(database_url).tenant.id
    intruder_id = new_tenant(database_url).tenant.id
    owner = operator(database_url, tenant_id=owner_id, roles=[Role.ADMIN])
    intruder = operator(database_url, tenant_id=intruder_id, roles=[Role.ADMIN])
    _checkpoint(database_url, owner_id)
    with operator_client(database_url) as client:
        entry = client.get("/v1/operators/audit/entries", headers=owner.headers).json()["items"][0]
        stolen = client.get(
            f"/v1/operators/audit/entries/{entry['id']}/proof", headers=intruder.headers
        )
        assert stolen.status_code == 404
        theirs = client.get("/v1/operators/audit/entries", headers=intruder.headers).json()
        assert entry["id"] not in {item["id"] for item in theirs["items"]}


def test_a_malformed_checkpoint_row_is_a_broken_chain(database_url: str) -> None:
    """A key id with a space (only tampering writes one) is 409 `audit_chain_broken`, as on
    `/v1/audit`, not a server error."""
    tenant_id = new_tenant(database_url).tenant.id
    officer = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    _checkpoint(database_url, tenant_id)
    statement = "UPDATE audit_checkpoints SET key_id = 'a b' WHERE chain_id = :c"
    asyncio.run(tamper_chain(database_url, statement, tenant_id))
    with operator_client(database_url) as client:
        latest = client.get("/v1/operators/audit/checkpoints/latest", headers=officer.headers)
    assert latest.status_code == 409, latest.text
    assert latest.headers["content-type"] == "application/problem+json"
    assert latest.json()["code"] == "audit_chain_broken"

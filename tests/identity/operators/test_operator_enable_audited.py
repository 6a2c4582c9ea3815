"""Giving a disabled operator its access back is a change of who may act in the back
office: like disabling, it leaves an entry in the tenant's audit log (through its security
event), naming who did it, to whom, and the status before and after. On both backends."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.identity.operators.permissions import Role
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import new_tenant, operator, operator_client


def _entries_about(database_url: str, tenant_id: uuid.UUID, target: str) -> list[AuditEntry]:
    async def read(session: AsyncSession) -> list[AuditEntry]:
        statement = (
            select(AuditEntry)
            .where(AuditEntry.tenant_id == tenant_id, AuditEntry.target == target)
            .order_by(AuditEntry.sequence)
        )
        return list((await session.execute(statement)).scalars())

    return run_in_unit_of_work(database_url, read)


def test_enabling_an_operator_again_is_in_the_audit_log(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    with operator_client(database_url) as client:
        disabled = client.post(
            f"/v1/operators/{colleague.public_id}/disable", headers=admin.headers
        )
        enabled = client.post(f"/v1/operators/{colleague.public_id}/enable", headers=admin.headers)
        again = client.post(f"/v1/operators/{colleague.public_id}/enable", headers=admin.headers)
    assert [r.status_code for r in (disabled, enabled, again)] == [200, 200, 200]
    assert enabled.json()["status"] == "active"
    entries = _entries_about(database_url, tenant_id, colleague.public_id)
    changes = [
        (
            entry.action,
            entry.actor_id,
            json.loads(entry.before or "{}"),
            json.loads(entry.after or "{}"),
        )
        for entry in entries
        if entry.before is not None
    ]
    # Disabled, then enabled once: enabling an active operator changes nothing, records nothing.
    assert changes == [
        ("operator.disabled", admin.public_id, {"status": "active"}, {"status": "disabled"}),
        ("operator.enabled", admin.public_id, {"status": "disabled"}, {"status": "active"}),
    ]

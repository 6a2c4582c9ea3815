"""What lands in the audit log: every security event, configuration changes with before
and after, and four-eyes approvals through to the money they move; each in the same
transaction as the act."""

from __future__ import annotations

import asyncio
import json
import uuid

from audit.audit_support import opened
from billfold.audit import service
from billfold.audit.context import Source, source_from_scope
from billfold.audit.models import AuditEntry
from billfold.identity.operators.permissions import Role
from billfold.identity.security_events import SecurityEvent
from billfold.kit.ids import format_id
from identity.operators.operators_support import (
    adjustment,
    new_tenant,
    open_accounts,
    operator,
    operator_client,
    with_ledger,
)


def _entries(database_url: str, tenant_id: uuid.UUID) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        async with opened(database_url) as unit_of_work, unit_of_work.begin() as session:
            page = await service.list_entries(session, tenant_id=tenant_id, cursor=None, limit=500)
            return page.items

    return asyncio.run(read())


def _security_events(database_url: str, tenant_id: uuid.UUID) -> list[SecurityEvent]:
    from billfold.identity.security_events import list_security_events

    async def read() -> list[SecurityEvent]:
        async with opened(database_url) as unit_of_work, unit_of_work.begin() as session:
            return await list_security_events(session, tenant_id=tenant_id, limit=500)

    return list(reversed(asyncio.run(read())))


def test_every_security_event_is_in_the_audit_log(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])  # created, signs in
    events = _security_events(database_url, tenant_id)
    entries = _entries(database_url, tenant_id)
    assert len(events) >= 4
    assert [
        (event.event_type, event.actor_type, event.actor_id, event.subject_id, event.detail)
        for event in events
    ] == [
        (entry.action, entry.actor_type, entry.actor_id, entry.target, entry.detail or "{}")
        for entry in entries
    ]
    assert {entry.occurred_at for entry in entries} == {event.occurred_at for event in events}


def test_a_role_change_is_audited_with_before_and_after(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    with operator_client(database_url) as client:
        response = client.put(
            f"/v1/operators/{colleague.public_id}/roles",
            json={"roles": ["finance", "support"]},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
    [change] = [e for e in _entries(database_url, tenant_id) if e.action == "operator.role_changed"]
    assert change.actor_id == admin.public_id
    assert change.target == colleague.public_id
    assert json.loads(change.before or "") == {"roles": "support"}
    assert json.loads(change.after or "") == {"roles": "finance support"}


def test_an_approved_adjustment_is_audited_from_request_to_transfer(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    approver = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    with operator_client(database_url) as client:
        requested = client.post(
            "/v1/approvals", json=adjustment(debit, credit, 750), headers=requester.headers
        )
        assert requested.status_code == 201, requested.text
        approval_id = requested.json()["id"]
        approved = client.post(
            f"/v1/approvals/{approval_id}/approve", json={}, headers=approver.headers
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "executed"
    entries = [e for e in _entries(database_url, tenant_id) if e.target == approval_id]
    assert [entry.action for entry in entries] == [
        "approval.requested",
        "approval.granted",
        "approval.executed",
    ]
    assert [entry.actor_id for entry in entries] == [
        requester.public_id,
        approver.public_id,
        approver.public_id,
    ]
    executed = entries[-1]
    assert json.loads(executed.before or "") == {"approval_status": "approved"}
    assert json.loads(executed.after or "") == {
        "approval_status": "executed",
        "transfer_id": format_id("txf", uuid.UUID(hex=approval_id.removeprefix("apr_"))),
    }
    detail = json.loads(executed.detail or "")
    assert detail["action_type"] == "ledger_adjustment"
    assert detail["requested_by"] == requester.public_id
    assert detail["payload"]["amount"] == "750"
    assert detail["payload"]["debit_account_id"] == format_id("acc", debit)


def test_the_request_source_is_read_from_the_asgi_scope() -> None:
    scope = {
        "type": "http",
        "client": ("2001:db8::1", 443),
        "headers": [(b"user-agent", b"x" * 300 + b"\n")],
    }
    assert source_from_scope(scope) == Source(ip="2001:db8::1", user_agent="x" * 256)
    assert source_from_scope({"type": "http", "client": ("testclient", 1), "headers": []}) == (
        Source(ip=None, user_agent=None)
    )
    assert source_from_scope({"type": "http", "client": None}) == Source(ip=None, user_agent=None)

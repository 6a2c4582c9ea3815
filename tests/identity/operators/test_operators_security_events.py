"""Operators' security events: recorded with the change they describe, naming who acted."""

from __future__ import annotations

import json
import uuid

from billfold.identity.operators.permissions import Role
from billfold.identity.security_events import (
    SecurityEvent,
    SecurityEventType,
    list_security_events,
)
from identity.identity_support import bearer, run_in_unit_of_work
from identity.operators.operators_support import (
    PASSWORD,
    adjustment,
    new_tenant,
    open_accounts,
    operator,
    operator_client,
    with_ledger,
)

Kind = SecurityEventType


def _events(database_url: str, tenant_id: uuid.UUID) -> list[SecurityEvent]:
    events = run_in_unit_of_work(
        database_url,
        lambda session: list_security_events(session, tenant_id=tenant_id, limit=500),
    )
    return list(reversed(events))  # oldest first


def test_operator_and_approval_events_name_actor_and_subject(database_url: str) -> None:
    tenant = new_tenant(database_url)
    tenant_id = tenant.tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    requester = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    approver = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    with operator_client(database_url) as client:
        made = client.post(
            "/v1/operators",
            json={"email": "new@example.com", "display_name": "New", "roles": ["support"]},
            headers=bearer(tenant.live_key.secret),
        ).json()
        client.put(
            f"/v1/operators/{made['id']}/roles",
            json={"roles": ["support", "risk_analyst"]},
            headers=admin.headers,
        )
        first = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=requester.headers
        ).json()["id"]
        second = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=requester.headers
        ).json()["id"]
        client.post(f"/v1/approvals/{first}/approve", headers=approver.headers)
        client.post(f"/v1/approvals/{second}/refuse", json={"note": "n"}, headers=approver.headers)
        client.post(f"/v1/approvals/{second}/approve", headers=approver.headers)  # refused: 409
        body = {"tenant_id": f"ten_{tenant_id.hex}", "email": admin.email, "password": "nope!"}
        client.post("/v1/operators/login", json=body)
        client.post("/v1/operators/login", json={**body, "password": PASSWORD})
    events = _events(database_url, tenant_id)
    by_kind: dict[str, list[SecurityEvent]] = {}
    for event in events:
        by_kind.setdefault(event.event_type, []).append(event)

    created = [e for e in by_kind[Kind.OPERATOR_CREATED] if e.subject_id == made["id"]]
    assert [(e.actor_type, e.actor_id) for e in created] == [
        ("api_key", f"key_{tenant.live_key.api_key.id.hex}")
    ]
    assert json.loads(created[0].detail) == {"roles": "support"}
    [changed] = by_kind[Kind.OPERATOR_ROLE_CHANGED]
    assert (changed.actor_id, changed.subject_id) == (admin.public_id, made["id"])
    assert json.loads(changed.detail) == {
        "roles_before": "support",
        "roles": "risk_analyst support",
    }

    requested = [(e.actor_id, e.subject_id) for e in by_kind[Kind.APPROVAL_REQUESTED]]
    assert requested == [(requester.public_id, first), (requester.public_id, second)]
    [granted] = by_kind[Kind.APPROVAL_GRANTED]
    assert (granted.actor_id, granted.subject_id) == (approver.public_id, first)
    assert json.loads(granted.detail) == {"action_type": "ledger_adjustment"}
    [refused] = by_kind[Kind.APPROVAL_REFUSED]  # the late approval recorded nothing
    assert (refused.actor_id, refused.subject_id) == (approver.public_id, second)

    [failed] = [e for e in by_kind[Kind.LOGIN_FAILED] if e.subject_id == admin.public_id]
    assert failed.actor_id is None
    succeeded = [e for e in by_kind[Kind.LOGIN_SUCCEEDED] if e.actor_id == admin.public_id]
    assert len(succeeded) == 2  # the helper's sign-in, then this one
    for event in events:  # never a password, a token or an address
        assert PASSWORD not in event.detail
        assert "bfo_" not in event.detail
        assert "@" not in event.detail

"""Disabling or enabling an operator changes who may act in the back office, so each is a
security event of its own (``operator.disabled``, ``operator.enabled``), recorded in the
transaction of the change, naming who acted, on whom, and the status before and after;
disabling also records the sessions it ended. A refused change records nothing. On both
backends."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from billfold.identity.operators import service
from billfold.identity.operators.errors import LastAdministrator
from billfold.identity.operators.permissions import Role
from billfold.identity.operators.types import Actor
from billfold.identity.security_events import (
    SecurityEvent,
    SecurityEventType,
    list_security_events,
)
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    new_tenant,
    operator,
    operator_client,
)

Kind = SecurityEventType


def _events_about(database_url: str, tenant_id: uuid.UUID, subject: str) -> list[SecurityEvent]:
    """The tenant's security events about ``subject``, oldest first, through the listing."""
    events = run_in_unit_of_work(
        database_url,
        lambda session: list_security_events(session, tenant_id=tenant_id, limit=500),
    )
    return [event for event in reversed(events) if event.subject_id == subject]


def _status_changes(events: list[SecurityEvent]) -> list[tuple[str, str | None, dict[str, object]]]:
    kinds = {Kind.OPERATOR_DISABLED.value, Kind.OPERATOR_ENABLED.value, Kind.SESSIONS_REVOKED.value}
    return [
        (event.event_type, event.actor_id, json.loads(event.detail))
        for event in events
        if event.event_type in kinds
    ]


def test_the_event_names_are_stable() -> None:
    assert Kind.OPERATOR_DISABLED.value == "operator.disabled"
    assert Kind.OPERATOR_ENABLED.value == "operator.enabled"


def test_disabling_and_enabling_an_operator_are_security_events(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    with operator_client(database_url) as client:
        disabled = client.post(
            f"/v1/operators/{colleague.public_id}/disable", headers=admin.headers
        )
        again = client.post(f"/v1/operators/{colleague.public_id}/disable", headers=admin.headers)
        enabled = client.post(f"/v1/operators/{colleague.public_id}/enable", headers=admin.headers)
    assert [r.status_code for r in (disabled, again, enabled)] == [200, 200, 200]
    events = _events_about(database_url, tenant_id, colleague.public_id)
    # Disabling an operator already disabled changes nothing and records nothing.
    assert _status_changes(events) == [
        (
            "operator.disabled",
            admin.public_id,
            {"status_before": "active", "status": "disabled"},
        ),
        ("sessions.revoked", admin.public_id, {"reason": "operator_disabled", "sessions": 1}),
        ("operator.enabled", admin.public_id, {"status_before": "disabled", "status": "active"}),
    ]
    for event in events:
        if event.event_type in (Kind.OPERATOR_DISABLED, Kind.OPERATOR_ENABLED):
            assert event.actor_type == "operator"


def test_a_refused_disabling_records_nothing(database_url: str) -> None:
    """The last active administrator cannot be disabled: no change, so no event (the event
    and the change commit together or not at all)."""
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    other = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    with operator_client(database_url) as client:
        disabled = client.post(f"/v1/operators/{other.public_id}/disable", headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    with pytest.raises(LastAdministrator):
        run_in_unit_of_work(
            database_url,
            lambda session: service.set_operator_status(
                session,
                principal=None,
                tenant_id=tenant_id,
                operator_id=admin.operator_id,
                active=False,
                actor=Actor.system(),
                now_ns=time.time_ns(),
            ),
        )
    assert _status_changes(_events_about(database_url, tenant_id, admin.public_id)) == []
    assert [
        kind
        for kind, _, _ in _status_changes(_events_about(database_url, tenant_id, other.public_id))
    ] == ["operator.disabled", "sessions.revoked"]


def test_a_reason_given_is_recorded_with_the_event_and_a_bad_body_changes_nothing(
    database_url: str,
) -> None:
    """Disabling took no body, so the log said who and when but never why; the optional
    `{"reason": …}` is kept in the event's detail. A body that is not that (an unknown
    member, an empty or over-long reason) is 422 and nothing changes."""
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    path = f"/v1/operators/{colleague.public_id}"
    with operator_client(database_url) as client:
        for bad in ({"reason": ""}, {"reason": "x" * 2_001}, {"why": "no"}, {"reason": 7}):
            refused = client.post(f"{path}/disable", json=bad, headers=admin.headers)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["code"] == "validation_failed"
        assert client.get(path, headers=admin.headers).json()["status"] == "active"
        disabled = client.post(
            f"{path}/disable", json={"reason": "laptop stolen"}, headers=admin.headers
        )
        enabled = client.post(
            f"{path}/enable", json={"reason": "device replaced"}, headers=admin.headers
        )
    assert [disabled.status_code, enabled.status_code] == [200, 200]
    changes = _status_changes(_events_about(database_url, tenant_id, colleague.public_id))
    assert changes == [
        (
            "operator.disabled",
            admin.public_id,
            {"status_before": "active", "status": "disabled", "reason": "laptop stolen"},
        ),
        ("sessions.revoked", admin.public_id, {"reason": "operator_disabled", "sessions": 1}),
        (
            "operator.enabled",
            admin.public_id,
            {"status_before": "disabled", "status": "active", "reason": "device replaced"},
        ),
    ]


def test_a_blank_reason_or_one_with_control_characters_is_refused_and_changes_nothing(
    database_url: str,
) -> None:
    """A reason is kept in the security event and the audit log, so it is cleaned as an
    approval's reason is: blanks alone say nothing (they passed as a 1 to 500 character
    reason), and control characters (a terminal escape) have no place in a log. Each is 422
    `invalid_note`; the operator stays active and nothing is recorded. Surrounding blanks
    are trimmed."""
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    colleague = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    path = f"/v1/operators/{colleague.public_id}"
    with operator_client(database_url) as client:
        for bad in ("   ", "\u001b[2Jgone", "bell\u0007"):
            refused = client.post(f"{path}/disable", json={"reason": bad}, headers=admin.headers)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "invalid_note"
        assert client.get(path, headers=admin.headers).json()["status"] == "active"
        assert _status_changes(_events_about(database_url, tenant_id, colleague.public_id)) == []
        disabled = client.post(
            f"{path}/disable", json={"reason": "  left the company\n"}, headers=admin.headers
        )
    assert disabled.status_code == 200, disabled.text
    assert _status_changes(_events_about(database_url, tenant_id, colleague.public_id))[0] == (
        "operator.disabled",
        admin.public_id,
        {"status_before": "active", "status": "disabled", "reason": "left the company"},
    )

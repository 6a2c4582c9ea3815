"""A limit increase is for an active end user. One for a user who is disabled, or erased
(erasure disables the user), is refused when it is asked for (409 ``holder_not_active``,
nothing stored), and, since a user may be disabled between the request and its approval,
again when it would be approved: 409 ``holder_not_active``, nothing executes, and the
request stays pending, to be refused or to expire (as with ``requester_not_permitted``).
With the ledger-backed executors and with identity's own. On both backends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.operators.models import ApprovalRequest, ApprovedChange
from billfold.identity.operators.permissions import Role
from billfold.identity.security_events import SecurityEventType, list_security_events
from billfold.identity.types import Mode, Principal
from billfold.identity.users import service as users
from billfold.identity.users.models import EndUser
from billfold.kit.ids import parse_id
from billfold.wallets.models import LimitOverride
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import SignedIn, end_user, new_tenant, operator
from identity.operators.operators_support import operator_client as client_for

PROBLEM = "application/problem+json"
Silence = Callable[[str, uuid.UUID, uuid.UUID], None]
"""Makes a user inactive: (database_url, tenant_id, user_id)."""


def _disable(database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """There is no route that disables a user but erasure; the status is what counts."""

    async def write(session: AsyncSession) -> None:
        await session.execute(
            update(EndUser)
            .where(EndUser.id == user_id, EndUser.tenant_id == tenant_id)
            .values(status="disabled")
        )

    run_in_unit_of_work(database_url, write)


def _erase(database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Identity's part of erasure (``billfold.privacy.erase_user``)."""
    principal = Principal(
        tenant_id=tenant_id, api_key_id=uuid.uuid4(), mode=Mode.TEST, scopes=frozenset()
    )
    run_in_unit_of_work(
        database_url,
        lambda session: users.erase_user_identifiers(
            session, principal=principal, user_id=user_id, now_ns=time.time_ns()
        ),
    )


SILENCES = pytest.mark.parametrize("silence", [_disable, _erase], ids=["disabled", "erased"])


def _increase(subject: str) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds",
        "payload": {"subject_id": subject, "limit": "daily", "asset": "USD", "amount": 900_000},
    }


def _desk(database_url: str) -> tuple[uuid.UUID, SignedIn, SignedIn, str]:
    tenant_id = new_tenant(database_url).tenant.id
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    compliance = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    return tenant_id, support, compliance, end_user(database_url, tenant_id=tenant_id)


def _assert_holder_not_active(response: Any, subject: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["code"], body["subject_id"], body["holder_status"]) == (
        "holder_not_active",
        subject,
        "disabled",
    )


def _stored(database_url: str, tenant_id: uuid.UUID) -> tuple[int, int, int]:
    """The tenant's approval requests, limit overrides and recorded approved changes."""

    async def count(session: AsyncSession) -> tuple[int, int, int]:
        counts = []
        for model in (ApprovalRequest, LimitOverride, ApprovedChange):
            statement = select(func.count()).where(model.tenant_id == tenant_id)
            counts.append(int((await session.execute(statement)).scalar_one()))
        return counts[0], counts[1], counts[2]

    return run_in_unit_of_work(database_url, count)


def _event_kinds(database_url: str, tenant_id: uuid.UUID) -> list[str]:
    events = run_in_unit_of_work(
        database_url,
        lambda session: list_security_events(session, tenant_id=tenant_id, limit=500),
    )
    return [event.event_type for event in events]


@SILENCES
@pytest.mark.parametrize("ledger_executors", [True, False], ids=["wallets", "identity"])
def test_an_increase_for_an_inactive_user_is_refused_when_asked(
    database_url: str, silence: Silence, ledger_executors: bool
) -> None:
    tenant_id, support, _, holder = _desk(database_url)
    silence(database_url, tenant_id, parse_id("usr", holder))
    with client_for(database_url, ledger_executors=ledger_executors) as client:
        asked = client.post("/v1/approvals", json=_increase(holder), headers=support.headers)
    _assert_holder_not_active(asked, holder)
    assert _stored(database_url, tenant_id) == (0, 0, 0)
    assert SecurityEventType.APPROVAL_REQUESTED.value not in _event_kinds(database_url, tenant_id)


def _ask(client: TestClient, who: SignedIn, subject: str) -> str:
    response = client.post("/v1/approvals", json=_increase(subject), headers=who.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@SILENCES
@pytest.mark.parametrize("ledger_executors", [True, False], ids=["wallets", "identity"])
def test_an_increase_for_a_user_made_inactive_since_cannot_be_approved(
    database_url: str, silence: Silence, ledger_executors: bool
) -> None:
    tenant_id, support, compliance, holder = _desk(database_url)
    with client_for(database_url, ledger_executors=ledger_executors) as client:
        approval_id = _ask(client, support, holder)
        silence(database_url, tenant_id, parse_id("usr", holder))
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=compliance.headers)
        _assert_holder_not_active(approved, holder)
        seen = client.get(f"/v1/approvals/{approval_id}", headers=compliance.headers).json()
        assert (seen["status"], seen["decided_by"], seen["result"]) == ("pending", None, None)
        assert _stored(database_url, tenant_id) == (1, 0, 0)
        assert SecurityEventType.APPROVAL_GRANTED.value not in _event_kinds(database_url, tenant_id)
        refused = client.post(
            f"/v1/approvals/{approval_id}/refuse",
            json={"note": "The user is gone"},
            headers=compliance.headers,
        )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"


@pytest.mark.parametrize("ledger_executors", [True, False], ids=["wallets", "identity"])
def test_an_increase_for_an_active_user_is_approved_as_before(
    database_url: str, ledger_executors: bool
) -> None:
    tenant_id, support, compliance, holder = _desk(database_url)
    with client_for(database_url, ledger_executors=ledger_executors) as client:
        approval_id = _ask(client, support, holder)
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=compliance.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "executed"
    overrides, changes = _stored(database_url, tenant_id)[1:]
    assert (overrides, changes) == ((1, 0) if ledger_executors else (0, 1))

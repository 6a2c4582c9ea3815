"""Four-eyes approval over HTTP, on both backends: a second operator decides, money moves
exactly once on approval and never on refusal, and nobody decides their own request."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from billfold.identity.operators.models import ApprovedChange
from billfold.identity.operators.permissions import Role
from billfold.kit.ids import format_id
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import AccountStatus
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    SignedIn,
    adjustment,
    balances,
    new_tenant,
    open_accounts,
    operator,
    operator_client,
    with_ledger,
)

PROBLEM = "application/problem+json"


def _two_accounts(database_url: str, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    return with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )


def _balances(database_url: str, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> object:
    return with_ledger(database_url, lambda ledger: balances(ledger, tenant_id=tenant_id, ids=ids))


def _finance_pair(database_url: str) -> tuple[SignedIn, SignedIn]:
    tenant_id = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    approver = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    return requester, approver


def _request(client: TestClient, who: SignedIn, body: dict[str, object]) -> str:
    response = client.post("/v1/approvals", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return str(response.json()["id"])


def test_an_approved_adjustment_moves_money_exactly_once(database_url: str) -> None:
    requester, approver = _finance_pair(database_url)
    debit, credit = _two_accounts(database_url, requester.tenant_id)
    with operator_client(database_url) as client:
        approval_id = _request(client, requester, adjustment(debit, credit, 500))
        assert _balances(database_url, requester.tenant_id, [debit, credit]) == [(0, 0), (0, 0)]
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=approver.headers)
        again = client.post(f"/v1/approvals/{approval_id}/approve", headers=approver.headers)
        refused_after = client.post(
            f"/v1/approvals/{approval_id}/refuse", json={"note": "late"}, headers=approver.headers
        )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "executed"
    assert body["decided_by"] == approver.public_id
    assert body["requested_by"] == requester.public_id
    assert body["result"] == {"transfer_id": "txf_" + approval_id.removeprefix("apr_")}
    for late in (again, refused_after):
        assert late.status_code == 409
        assert late.headers["content-type"] == PROBLEM
        assert late.json()["code"] == "approval_already_decided"
        assert late.json()["approval_status"] == "executed"
    assert _balances(database_url, requester.tenant_id, [debit, credit]) == [(500, 0), (0, 500)]


def test_the_requester_cannot_approve_their_own_request(database_url: str) -> None:
    requester, _approver = _finance_pair(database_url)
    debit, credit = _two_accounts(database_url, requester.tenant_id)
    with operator_client(database_url) as client:
        approval_id = _request(client, requester, adjustment(debit, credit))
        own = client.post(f"/v1/approvals/{approval_id}/approve", headers=requester.headers)
        own_refusal = client.post(
            f"/v1/approvals/{approval_id}/refuse", json={"note": "x"}, headers=requester.headers
        )
        after = client.get(f"/v1/approvals/{approval_id}", headers=requester.headers)
    for response in (own, own_refusal):
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "self_approval_forbidden"
    assert after.json()["status"] == "pending"
    assert after.json()["decided_by"] is None
    assert _balances(database_url, requester.tenant_id, [debit, credit]) == [(0, 0), (0, 0)]


def test_an_approver_without_the_permission_is_refused(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    other_support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    finance = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    [frozen] = _frozen_accounts(database_url, tenant_id, count=1)
    debit, credit = _two_accounts(database_url, tenant_id)
    with operator_client(database_url) as client:
        unfreeze_id = _request(client, support, _unfreeze(frozen))
        adjustment_id = _request(client, finance, adjustment(debit, credit))
        # Visible to support (it may ask for unfreezes) but not decidable by it.
        by_support = client.post(
            f"/v1/approvals/{unfreeze_id}/approve", headers=other_support.headers
        )
        # Not even visible to an admin, who moves no money.
        by_admin = client.post(f"/v1/approvals/{adjustment_id}/approve", headers=admin.headers)
        states = [
            client.get(f"/v1/approvals/{unfreeze_id}", headers=support.headers).json()["status"],
            client.get(f"/v1/approvals/{adjustment_id}", headers=finance.headers).json()["status"],
        ]
    assert by_support.status_code == 403
    assert by_support.json()["code"] == "permission_denied"
    assert by_support.json()["required_permission"] == "account.unfreeze.approve"
    assert by_admin.status_code == 404
    assert by_admin.json()["code"] == "approval_not_found"
    assert states == ["pending", "pending"]
    assert _balances(database_url, tenant_id, [debit, credit]) == [(0, 0), (0, 0)]
    assert _statuses(database_url, tenant_id, [frozen]) == [AccountStatus.FROZEN]


def test_a_refusal_executes_nothing(database_url: str) -> None:
    requester, approver = _finance_pair(database_url)
    debit, credit = _two_accounts(database_url, requester.tenant_id)
    with operator_client(database_url) as client:
        approval_id = _request(client, requester, adjustment(debit, credit))
        no_note = client.post(
            f"/v1/approvals/{approval_id}/refuse", json={}, headers=approver.headers
        )
        control_note = client.post(
            f"/v1/approvals/{approval_id}/refuse", json={"note": "\u0001"}, headers=approver.headers
        )
        refused = client.post(
            f"/v1/approvals/{approval_id}/refuse",
            json={"note": "No ticket for this"},
            headers=approver.headers,
        )
        approve_after = client.post(
            f"/v1/approvals/{approval_id}/approve", headers=approver.headers
        )
    assert no_note.status_code == 422
    assert control_note.status_code == 422
    assert control_note.json()["code"] == "invalid_note"
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    assert refused.json()["decision_note"] == "No ticket for this"
    assert refused.json()["result"] is None
    assert approve_after.status_code == 409
    assert approve_after.json()["approval_status"] == "refused"
    assert _balances(database_url, requester.tenant_id, [debit, credit]) == [(0, 0), (0, 0)]


def test_a_failed_adjustment_says_why_and_moves_nothing(database_url: str) -> None:
    requester, approver = _finance_pair(database_url)
    debit, credit = _two_accounts(database_url, requester.tenant_id)
    _freeze(database_url, requester.tenant_id, debit)
    with operator_client(database_url) as client:
        response = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=requester.headers
        )
        approval_id = response.json()["id"]
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=approver.headers)
    assert approved.status_code == 200
    assert approved.json()["status"] == "failed"
    assert approved.json()["result"] == {"failure": "account_frozen"}
    assert _balances(database_url, requester.tenant_id, [debit, credit]) == [(0, 0), (0, 0)]


def test_an_approved_unfreeze_activates_the_account(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    officer = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    frozen, active = _frozen_accounts(database_url, tenant_id, count=2)
    _unfreeze_now(database_url, tenant_id, active)
    with operator_client(database_url) as client:
        not_frozen = client.post("/v1/approvals", json=_unfreeze(active), headers=analyst.headers)
        approval_id = _request(client, analyst, _unfreeze(frozen))
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=officer.headers)
    assert not_frozen.status_code == 422
    assert not_frozen.json()["code"] == "invalid_approval_payload"
    assert approved.json()["status"] == "executed"
    assert _statuses(database_url, tenant_id, [frozen, active]) == [AccountStatus.ACTIVE] * 2


@pytest.mark.parametrize(
    ("action_type", "payload", "roles"),
    [
        (
            "limit_increase",
            {
                "subject_id": "usr_" + "1" * 32,
                "limit": "daily_withdrawal",
                "asset": "EUR",
                "amount": "250000",
            },
            (Role.SUPPORT, Role.COMPLIANCE_OFFICER),
        ),
    ],
)
def test_limit_increases_are_recorded_for_their_domain(
    database_url: str, action_type: str, payload: dict[str, str], roles: tuple[Role, Role]
) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=tenant_id, roles=[roles[0]])
    approver = operator(database_url, tenant_id=tenant_id, roles=[roles[1]])
    body = {"action_type": action_type, "reason": "Customer asked", "payload": payload}
    # Identity's own registry (the application installs wallets' limit-increase executor,
    # tested in tests/wallets/test_limit_overrides.py): it only records the change.
    with operator_client(database_url, ledger_executors=False) as client:
        approval_id = _request(client, requester, body)
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=approver.headers)
    assert approved.json()["status"] == "executed"
    assert approved.json()["result"] == {"recorded": True, "applied": False}
    internal_id = uuid.UUID(hex=approval_id.removeprefix("apr_"))

    async def read(session: object) -> ApprovedChange | None:
        return await session.get(ApprovedChange, internal_id)  # type: ignore[attr-defined,no-any-return]

    change = run_in_unit_of_work(database_url, read)
    assert change is not None
    assert change.applied_at is None  # identity alone applies nothing: nothing is faked
    assert change.tenant_id == tenant_id
    assert change.action_type == action_type


def test_an_approved_key_rotation_makes_a_new_key_version_active(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])
    approver = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])

    def rotation(key_id: str) -> dict[str, object]:
        return {"action_type": "key_rotation", "reason": "Yearly", "payload": {"key_id": key_id}}

    with operator_client(database_url) as client:
        decided = []
        for key_id in ("pii", "pii"):
            approval_id = _request(client, requester, rotation(key_id))
            answer = client.post(f"/v1/approvals/{approval_id}/approve", headers=approver.headers)
            assert answer.status_code == 200, answer.text
            decided.append((answer.json()["status"], answer.json()["result"]))
    assert decided == [
        ("executed", {"purpose": "pii", "version": 1}),
        ("executed", {"purpose": "pii", "version": 2}),
    ]

    async def versions(session: object) -> list[tuple[int, str]]:
        from sqlalchemy import select

        from billfold.keys.models import KeyEncryptionKey

        rows = await session.execute(  # type: ignore[attr-defined]
            select(KeyEncryptionKey.version, KeyEncryptionKey.status)
            .where(KeyEncryptionKey.tenant_id == tenant_id, KeyEncryptionKey.purpose == "pii")
            .order_by(KeyEncryptionKey.version)
        )
        return [(int(row.version), str(row.status)) for row in rows]

    assert run_in_unit_of_work(database_url, versions) == [(1, "decrypt_only"), (2, "active")]


def _unfreeze(account_id: uuid.UUID) -> dict[str, object]:
    return {
        "action_type": "account_unfreeze",
        "reason": "Customer verified by phone",
        "payload": {"mode": "test", "account_id": format_id("acc", account_id)},
    }


def _frozen_accounts(database_url: str, tenant_id: uuid.UUID, *, count: int) -> list[uuid.UUID]:
    async def make(ledger: Ledger) -> list[uuid.UUID]:
        ids = await open_accounts(ledger, tenant_id=tenant_id, count=count)
        for account_id in ids:
            await _set_status(ledger, tenant_id, account_id, AccountStatus.FROZEN)
        return ids

    return with_ledger(database_url, make)


def _freeze(database_url: str, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    with_ledger(
        database_url,
        lambda ledger: _set_status(ledger, tenant_id, account_id, AccountStatus.FROZEN),
    )


def _unfreeze_now(database_url: str, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    with_ledger(
        database_url,
        lambda ledger: _set_status(ledger, tenant_id, account_id, AccountStatus.ACTIVE),
    )


async def _set_status(
    ledger: Ledger, tenant_id: uuid.UUID, account_id: uuid.UUID, status: AccountStatus
) -> None:
    from billfold.flows.approvals import ledger_tenant_id
    from billfold.identity.types import Mode

    await ledger.set_account_status(
        tenant_id=ledger_tenant_id(tenant_id, Mode.TEST), account_id=account_id, status=status
    )


def _statuses(database_url: str, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> list[AccountStatus]:
    async def read(ledger: Ledger) -> list[AccountStatus]:
        from billfold.flows.approvals import ledger_tenant_id
        from billfold.identity.types import Mode

        accounts = await ledger.lookup_accounts(
            tenant_id=ledger_tenant_id(tenant_id, Mode.TEST), ids=ids
        )
        return [account.status for account in accounts]

    return with_ledger(database_url, read)

"""Approvals stay inside their tenant and mode, and every bad request is a problem that
changes nothing; the ledger tenant of a (tenant, mode) is the one the API uses."""

from __future__ import annotations

import uuid

from billfold.flows.approvals import ledger_tenant_id
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode
from billfold.kit.auth import Principal
from billfold.kit.ids import format_id
from identity.identity_support import bearer
from identity.operators.operators_support import (
    adjustment,
    balances,
    new_tenant,
    open_accounts,
    operator,
    operator_client,
    with_ledger,
)

PROBLEM = "application/problem+json"


def test_the_ledger_tenant_is_the_one_api_keys_use() -> None:
    tenant_id = uuid.uuid4()
    for mode in Mode:
        principal = Principal(
            tenant_id=tenant_id, api_key_id=uuid.uuid4(), mode=mode, scopes=frozenset()
        )
        assert ledger_tenant_id(tenant_id, mode) == principal.ledger_tenant_id
    assert ledger_tenant_id(tenant_id, Mode.TEST) != ledger_tenant_id(tenant_id, Mode.LIVE)


def test_another_tenants_requests_are_not_found_and_cannot_be_decided(database_url: str) -> None:
    home = new_tenant(database_url).tenant.id
    away = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=home, roles=[Role.FINANCE])
    outsider = operator(database_url, tenant_id=away, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=home, count=2)
    )
    with operator_client(database_url) as client:
        created = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=requester.headers
        )
        path = f"/v1/approvals/{created.json()['id']}"
        responses = [
            client.get(path, headers=outsider.headers),
            client.post(f"{path}/approve", headers=outsider.headers),
            client.post(f"{path}/refuse", json={"note": "no"}, headers=outsider.headers),
        ]
        outsider_list = client.get("/v1/approvals", headers=outsider.headers).json()["items"]
        # The outsider naming the home tenant's accounts finds none in its own ledger.
        borrowed = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=outsider.headers
        )
        still = client.get(path, headers=requester.headers).json()["status"]
    for response in responses:
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "approval_not_found"
    assert outsider_list == []
    assert borrowed.status_code == 422
    assert borrowed.json()["code"] == "invalid_approval_payload"
    assert still == "pending"


def test_test_mode_accounts_are_not_live_mode_accounts(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    finance = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    with operator_client(database_url) as client:
        live = client.post(
            "/v1/approvals", json=adjustment(debit, credit, mode="live"), headers=finance.headers
        )
        listed = client.get("/v1/approvals", headers=finance.headers).json()["items"]
    assert live.status_code == 422
    assert live.json()["code"] == "invalid_approval_payload"
    assert listed == []


def test_malformed_approval_requests_are_problems_and_create_nothing(database_url: str) -> None:
    tenant = new_tenant(database_url)
    tenant_id = tenant.tenant.id
    finance = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    good = adjustment(debit, credit)
    payload = good["payload"]
    assert isinstance(payload, dict)
    bad_bodies = {
        "unknown action": {**good, "action_type": "mint_money"},
        "zero amount": {**good, "payload": {**payload, "amount": 0}},
        "negative amount": {**good, "payload": {**payload, "amount": -5}},
        "float amount": {**good, "payload": {**payload, "amount": 1.5}},
        "huge amount": {**good, "payload": {**payload, "amount": str(2**127)}},
        "same account": {
            **good,
            "payload": {**payload, "credit_account_id": format_id("acc", debit)},
        },
        "bad account id": {**good, "payload": {**payload, "debit_account_id": "acc_123"}},
        "extra field": {**good, "payload": {**payload, "fee": 1}},
        "no reason": {k: v for k, v in good.items() if k != "reason"},
        "short expiry": {**good, "expires_in_s": 1},
        "control characters": {**good, "reason": "a\u0000b"},
        "other payload": {**good, "payload": {"key_id": "x"}},
    }
    with operator_client(database_url) as client:
        responses = {
            case: client.post("/v1/approvals", json=body, headers=finance.headers)
            for case, body in bad_bodies.items()
        }
        anonymous = client.post("/v1/approvals", json=good)
        with_api_key = client.post(
            "/v1/approvals", json=good, headers=bearer(tenant.live_key.secret)
        )
        bad_ids = [
            client.get("/v1/approvals/apr_zz", headers=finance.headers),
            client.post(f"/v1/approvals/opr_{'0' * 32}/approve", headers=finance.headers),
        ]
        missing = client.post(f"/v1/approvals/apr_{'0' * 32}/approve", headers=finance.headers)
        support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
        # A caller without the right learns nothing about accounts: 403, not 422.
        nowhere = adjustment(uuid.uuid4(), uuid.uuid4())
        wrong_role = client.post("/v1/approvals", json=nowhere, headers=support.headers)
        listed = client.get("/v1/approvals", headers=finance.headers).json()["items"]
    for case, response in responses.items():
        assert response.status_code == 422, case
        assert response.headers["content-type"] == PROBLEM, case
    for response in (anonymous, with_api_key):
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
    for response in bad_ids:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_id"
    assert missing.status_code == 404
    assert wrong_role.status_code == 403
    assert wrong_role.json()["code"] == "permission_denied"
    assert listed == []
    assert with_ledger(
        database_url, lambda ledger: balances(ledger, tenant_id=tenant_id, ids=[debit, credit])
    ) == [(0, 0), (0, 0)]


def test_without_the_ledger_wiring_ledger_actions_are_refused_clearly(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    finance = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    with operator_client(database_url, ledger_executors=False) as client:
        response = client.post(
            "/v1/approvals", json=adjustment(debit, credit), headers=finance.headers
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "approval_executor_unavailable"

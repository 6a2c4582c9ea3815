"""Throttles and idempotency beyond API keys, on both backends: the public sign-in routes
are limited per client address, operators per operator, and an operator's POSTs are
idempotent like every other caller's."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.permissions import Role
from billfold.kit.ids import format_id
from billfold.kit.settings import Settings
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    adjustment,
    new_tenant,
    open_accounts,
    operator,
    with_ledger,
)

PROBLEM = "application/problem+json"


def _client(database_url: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(database_url=database_url, **settings)))  # type: ignore[arg-type]


def _assert_rate_limited(response: object) -> None:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    assert response.json()["code"] == "rate_limited"  # type: ignore[attr-defined]
    assert int(response.headers["retry-after"]) >= 1  # type: ignore[attr-defined]


def test_sign_in_routes_are_throttled_per_client_address_across_routes(
    database_url: str,
) -> None:
    tenant_id = format_id("ten", new_tenant(database_url).tenant.id)
    operator_login = {"tenant_id": tenant_id, "email": "x@example.com", "password": "wrong-one"}
    user_login = {
        "tenant_id": tenant_id,
        "mode": "test",
        "identifier": "x@example.com",
        "password": "wrong-one",
    }
    with _client(database_url, rate_limit_sign_in_requests=3) as client:
        answers = [
            client.post("/v1/operators/login", json=operator_login),
            client.post("/v1/sessions", json=user_login),
            client.post("/v1/sessions/refresh", json={"refresh_token": "bfu_rt_nothing"}),
        ]
        assert [answer.status_code for answer in answers] == [401, 401, 401]
        _assert_rate_limited(client.post("/v1/operators/login", json=operator_login))
        _assert_rate_limited(client.post("/v1/sessions", json=user_login))


def test_each_operator_is_rate_limited_on_its_own(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    busy = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    quiet = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    with _client(database_url, rate_limit_credential_requests=2) as client:
        first = client.get("/v1/operators/me", headers=busy.headers)
        assert first.status_code == 200
        assert first.headers["ratelimit-remaining"] == "1"
        assert client.get("/v1/operators/me", headers=busy.headers).status_code == 200
        _assert_rate_limited(client.get("/v1/operators/me", headers=busy.headers))
        assert client.get("/v1/operators/me", headers=quiet.headers).status_code == 200


def _approval_requests(database_url: str, tenant_id: uuid.UUID) -> int:
    async def count(session: object) -> int:
        from sqlalchemy import func, select

        statement = select(func.count()).where(ApprovalRequest.tenant_id == tenant_id)
        return int((await session.execute(statement)).scalar_one())  # type: ignore[attr-defined]

    return run_in_unit_of_work(database_url, count)


def test_an_operators_post_replays_under_its_idempotency_key(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    requester = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    other = operator(database_url, tenant_id=tenant_id, roles=[Role.FINANCE])
    debit, credit = with_ledger(
        database_url, lambda ledger: open_accounts(ledger, tenant_id=tenant_id, count=2)
    )
    body = adjustment(debit, credit)
    keyed = {**requester.headers, "Idempotency-Key": "adjust-1"}
    with _client(database_url) as client:
        first = client.post("/v1/approvals", json=body, headers=keyed)
        replay = client.post("/v1/approvals", json=body, headers=keyed)
        changed = client.post("/v1/approvals", json=adjustment(debit, credit, 7), headers=keyed)
        # Keys belong to the operator: another operator's same key is a request of its own.
        others = client.post(
            "/v1/approvals", json=body, headers={**other.headers, "Idempotency-Key": "adjust-1"}
        )
    assert first.status_code == 201, first.text
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert changed.status_code == 422
    assert changed.headers["content-type"] == PROBLEM
    assert others.status_code == 201
    assert others.json()["id"] != first.json()["id"]
    assert _approval_requests(database_url, tenant_id) == 2

"""Helpers for the ledger API tests: the whole app (lifespan included), and tenants and API
keys made through identity's service, as `billfold tenant create` makes them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.types import Mode, Scope
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key

READ_WRITE = [Scope.LEDGER_READ, Scope.LEDGER_WRITE]
API_SETTINGS: dict[str, Any] = {"ledger_batch_window_ms": 0}


@dataclass(frozen=True)
class Keys:
    """One tenant's API keys (secrets), each with a different reach."""

    tenant_id: uuid.UUID
    writer: str
    """Test mode, ledger:read and ledger:write."""
    reader: str
    """Test mode, ledger:read only."""
    live_writer: str
    """Live mode, ledger:read and ledger:write."""
    admin: str
    """Test mode, tenant:admin only: no ledger scope."""


def make_keys(database_url: str, name: str = "Tenant") -> Keys:
    tenant = bootstrap_tenant(database_url, name)
    tenant_id = tenant.tenant.id

    def key(scopes: list[Scope], mode: Mode = Mode.TEST) -> str:
        return create_key(database_url, tenant_id=tenant_id, scopes=scopes, mode=mode).secret

    return Keys(
        tenant_id=tenant_id,
        writer=key(READ_WRITE),
        reader=key([Scope.LEDGER_READ]),
        live_writer=key(READ_WRITE, Mode.LIVE),
        admin=tenant.test_key.secret,
    )


@contextmanager
def api(database_url: str, **settings: Any) -> Iterator[TestClient]:
    """A client for the whole app on `database_url`, with `settings` overriding."""
    merged = {**API_SETTINGS, **settings}
    with TestClient(create_app(Settings(database_url=database_url, **merged))) as client:
        yield client


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def account_id() -> str:
    return f"acc_{uuid.uuid4().hex}"


def transfer_id() -> str:
    return f"txf_{uuid.uuid4().hex}"


def open_account(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"ledger": "USD", "code": 1, **fields}
    response = client.post("/v1/accounts", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def transfer(debit: str, credit: str, amount: int | str = "10", **fields: Any) -> dict[str, Any]:
    return {
        "id": transfer_id(),
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "ledger": "USD",
        "code": 1,
        **fields,
    }


def post_transfer(client: TestClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/transfers", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def balances(client: TestClient, key: str, account: str) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account}/balances", headers=auth(key))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """`response` is a problem+json document with `status` and `code`; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body

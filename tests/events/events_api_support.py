"""Helpers for the events API's tests: keys of two tenants, an application that delivers as
`billfold serve` does (embedded worker, short polls), a transfer posted over HTTP, and a
wait for what the worker does meanwhile."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key

__all__ = ["EVERYTHING", "auth", "client", "keys", "post_transfer", "wait_for"]

EVERYTHING = [Scope.EVENTS_READ, Scope.WEBHOOKS_WRITE, Scope.LEDGER_READ, Scope.LEDGER_WRITE]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keys(database_url: str) -> tuple[str, str, str]:
    """A full key, a read-only key, and another tenant's full key."""
    tenant = bootstrap_tenant(database_url, "Events API").tenant.id
    other = bootstrap_tenant(database_url, "Other").tenant.id
    full = create_key(database_url, tenant_id=tenant, scopes=EVERYTHING).secret
    reader = create_key(database_url, tenant_id=tenant, scopes=[Scope.EVENTS_READ]).secret
    stranger = create_key(database_url, tenant_id=other, scopes=EVERYTHING).secret
    return full, reader, stranger


def client(database_url: str, **settings: Any) -> TestClient:
    merged = {
        "ledger_batch_window_ms": 0,
        "embedded_worker": True,  # these tests watch the serve process deliver
        "webhooks_allow_private": True,
        "events_poll_interval_s": 0.02,
        "events_stream_poll_interval_s": 0.05,
        "events_stream_duration_max_s": 0.5,
        **settings,
    }
    return TestClient(create_app(Settings(database_url=database_url, **merged)))


def post_transfer(api: TestClient, key: str) -> str:
    accounts = [
        api.post("/v1/accounts", json={"ledger": "USD", "code": 1}, headers=auth(key)).json()["id"]
        for _ in range(2)
    ]
    body = {
        "id": f"txf_{time.time_ns():032x}",
        "debit_account_id": accounts[0],
        "credit_account_id": accounts[1],
        "amount": "42",
        "ledger": "USD",
        "code": 1,
    }
    response = api.post("/v1/transfers", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    return str(body["id"])


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

"""Helpers for privacy tests: the whole app with a master key, a tenant with keys of
chosen scopes, end users signed up through the API."""

from __future__ import annotations

import base64
import os
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
from identity.users.users_support import PASSWORD, users_config

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
"""One per test session: every app of the session shares the root key, as one deployment."""
PII_SCOPES = [Scope.USERS_ADMIN, Scope.PII_WRITE]


@dataclass(frozen=True)
class PrivacyTenant:
    tenant_id: uuid.UUID
    writer: str
    """users:admin + pii:write: stores, sees masked."""
    reader: str
    """users:admin + pii:write + pii:read: sees unmasked, exports, erases."""
    detokenizer: str
    """pii:detokenize only."""
    ledger: str
    """ledger:read + ledger:write."""


def new_privacy_tenant(database_url: str) -> PrivacyTenant:
    tenant = bootstrap_tenant(database_url, name=f"Privacy {uuid.uuid4().hex[:6]}")

    def key(scopes: list[Scope]) -> str:
        return create_key(
            database_url, tenant_id=tenant.tenant.id, scopes=scopes, mode=Mode.TEST
        ).secret

    return PrivacyTenant(
        tenant_id=tenant.tenant.id,
        writer=key(PII_SCOPES),
        reader=key([*PII_SCOPES, Scope.PII_READ]),
        detokenizer=key([Scope.PII_DETOKENIZE]),
        ledger=key([Scope.LEDGER_READ, Scope.LEDGER_WRITE]),
    )


def privacy_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "master_key": MASTER_KEY,
        "ledger_batch_window_ms": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def privacy_client(database_url: str, **overrides: Any) -> Iterator[TestClient]:
    app = create_app(privacy_settings(database_url, **overrides))
    app.state.users_config = users_config()  # cheap password hashing
    with TestClient(app) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sign_up(client: TestClient, key: str, *, email: str | None = None) -> str:
    body = {
        "email": email or f"u{uuid.uuid4().hex[:10]}@example.com",
        "password": "correct horse battery",
    }
    response = client.post("/v1/users", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def signed_in_user(client: TestClient, writer: str) -> tuple[str, str, str]:
    """A new user signed up by the `writer` key and signed in with a password: its id,
    access token and session id."""
    email = f"u{uuid.uuid4().hex[:10]}@example.com"
    created = client.post(
        "/v1/users", json={"email": email, "password": PASSWORD}, headers=auth(writer)
    )
    assert created.status_code == 201, created.text
    answer = client.post(
        "/v1/sessions",
        json={
            "tenant_id": created.json()["tenant_id"],
            "mode": "test",
            "identifier": email,
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["tokens"]
    return created.json()["id"], tokens["access_token"], tokens["session_id"]

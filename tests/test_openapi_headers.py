"""The document names the headers the platform reads and writes around the routes: the
`Idempotency-Key` of every credential's POST, PUT, PATCH and DELETE, `Idempotent-Replayed`
on its responses, and `X-Request-Id` on every response; and the server sends them as documented."""

from __future__ import annotations

import re
from typing import Any

import pytest

from billfold.kit.http.openapi import IDEMPOTENCY_KEY_PARAMETER
from ledger.ledger_api_support import Keys, account_id, api, auth, make_keys

METHODS = ("get", "put", "post", "delete", "patch")
KEYED = {"put", "post", "delete", "patch"}


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_credentials_change_documents_its_idempotency_key(database_url: str) -> None:
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    changes = [
        (method, path, operation)
        for method, path, operation in _operations(document)
        if method in KEYED and operation.get("security")
    ]
    assert len(changes) > 60
    assert {method for method, _, _ in changes} == KEYED
    for method, path, operation in changes:
        keys = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert keys == [IDEMPOTENCY_KEY_PARAMETER], (method, path)
        for status, response in operation["responses"].items():
            assert "Idempotent-Replayed" in response["headers"], (method, path, status)
    for method, path, operation in _operations(document):
        if method not in KEYED or not operation.get("security"):
            names = [p["name"] for p in operation.get("parameters", [])]
            assert "Idempotency-Key" not in names, (method, path)
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-Id"]["required"] is True, (method, path, status)


def test_the_headers_are_sent_as_documented(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
        body = {"id": account_id(), "ledger": "USD", "code": 1}
        headers = auth(keys.writer, **{"Idempotency-Key": "key one"})
        first = client.post("/v1/accounts", json=body, headers=headers)
        again = client.post("/v1/accounts", json=body, headers=headers)
        missing = client.get("/v1/no-such-thing", headers=auth(keys.reader))
    operation = document["paths"]["/v1/accounts"]["post"]
    parameter = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert re.fullmatch(parameter["schema"]["pattern"], "key one")
    request_id = operation["responses"]["201"]["headers"]["X-Request-Id"]["schema"]["pattern"]
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    for response in (first, again, missing):
        assert re.fullmatch(request_id, response.headers["x-request-id"])


def test_every_202_documents_the_body_it_carries(database_url: str) -> None:
    """Payments held for review, conversions held, rule disablings and model promotions
    awaiting approval answer 202 with the route's own body (`kit.http.openapi`)."""
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    accepted = [
        (method, path, operation["responses"]["202"])
        for method, path, operation in _operations(document)
        if "202" in operation["responses"]
    ]
    assert len(accepted) >= 8
    for method, path, response in accepted:
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        assert schema, (method, path)
    held = document["paths"]["/v1/me/p2p"]["post"]["responses"]
    assert held["202"]["content"] == held["201"]["content"]

"""The `Idempotency-Key` field as the whole app reads it, on SQLite and PostgreSQL: the
draft's Structured Field String and the SDK's bare key name one key, and a key is looked at
only where there is idempotency (a caller with a valid credential): an anonymous caller
gets its 401 and a public route its own answer, whatever the key."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.ledger_api_support import Keys, api, assert_problem, auth, make_keys

ACCOUNT = {"ledger": "USD", "code": 1}
MALFORMED = ["", "k" * 256, '"unterminated']


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


def _keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def test_a_quoted_key_and_the_bare_key_it_quotes_are_one_key(database_url: str, keys: Keys) -> None:
    """draft-ietf-httpapi-idempotency-key-header section 2.1: the field is an sf-string."""
    with api(database_url) as client:
        first = client.post(
            "/v1/accounts", json=ACCOUNT, headers=auth(keys.writer, **_keyed('"8e03-40d5"'))
        )
        retried = client.post(
            "/v1/accounts", json=ACCOUNT, headers=auth(keys.writer, **_keyed("8e03-40d5"))
        )
        listed = client.get("/v1/accounts", headers=auth(keys.reader)).json()["items"]
    assert first.status_code == retried.status_code == 201
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json() == first.json()
    assert [account["id"] for account in listed] == [first.json()["id"]], "opened once"


@pytest.mark.parametrize("key", MALFORMED)
def test_a_caller_without_a_valid_credential_gets_401_whatever_its_key(
    database_url: str, keys: Keys, key: str
) -> None:
    with api(database_url) as client:
        anonymous = client.post("/v1/accounts", json=ACCOUNT, headers=_keyed(key))
        unknown = client.post(
            "/v1/accounts", json=ACCOUNT, headers=auth("bf_test_nope", **_keyed(key))
        )
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="billfold"'
    assert_problem(unknown, 401, "unauthorized")
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]


@pytest.mark.parametrize("key", MALFORMED)
def test_a_public_route_ignores_the_key(database_url: str, key: str) -> None:
    """Public routes have no key scope, so no idempotency: the key is not theirs to refuse."""
    login: dict[str, Any] = {
        "tenant_id": f"ten_{'0' * 32}",
        "email": "nobody@example.com",
        "password": "not the password",
    }
    with api(database_url) as client:
        response = client.post("/v1/operators/login", json=login, headers=_keyed(key))
    assert_problem(response, 401, "login_failed")


@pytest.mark.parametrize("key", MALFORMED)
def test_an_admitted_caller_with_a_malformed_key_gets_400_counted(
    database_url: str, keys: Keys, key: str
) -> None:
    with api(database_url) as client:
        response = client.post(
            "/v1/accounts", json=ACCOUNT, headers=auth(keys.writer, **_keyed(key))
        )
        listed = client.get("/v1/accounts", headers=auth(keys.reader)).json()["items"]
    assert_problem(response, 400, "idempotency_key_invalid")
    assert response.headers["ratelimit"].startswith('"credential";r=')
    assert listed == [], "nothing ran"

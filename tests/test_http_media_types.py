"""A body in a media type a route does not take, on SQLite and PostgreSQL: 415 names the one
it does, in `Accept` (RFC 9110 sections 15.5.16 and 12.5.1), `Accept-Patch` as well for a
PATCH (RFC 5789 section 2.2), and an idempotent replay of the 415 names it too."""

from __future__ import annotations

import uuid

import pytest

from billfold.identity.types import Scope
from identity.identity_support import create_key
from ledger.ledger_api_support import Keys, api, assert_problem, auth, make_keys

ACCOUNT_TEXT = b'{"ledger": "USD", "code": 1}'
TEXT = {"Content-Type": "text/plain"}


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


def test_a_415_names_the_media_type_it_takes(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        refused = client.post(
            "/v1/accounts", content=ACCOUNT_TEXT, headers=auth(keys.writer, **TEXT)
        )
    assert_problem(refused, 415, "unsupported_media_type")
    assert refused.headers["accept"] == "application/json"
    assert "accept-patch" not in refused.headers


def test_the_replay_of_a_415_names_it_too(database_url: str, keys: Keys) -> None:
    headers = auth(keys.writer, **TEXT, **{"Idempotency-Key": "text-body"})
    with api(database_url) as client:
        first = client.post("/v1/accounts", content=ACCOUNT_TEXT, headers=headers)
        replay = client.post("/v1/accounts", content=ACCOUNT_TEXT, headers=headers)
    assert_problem(replay, 415, "unsupported_media_type")
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["accept"] == first.headers["accept"] == "application/json"


def test_a_415_to_a_patch_names_the_patch_format_it_takes(database_url: str, keys: Keys) -> None:
    writer = create_key(database_url, tenant_id=keys.tenant_id, scopes=[Scope.WEBHOOKS_WRITE])
    with api(database_url) as client:
        refused = client.patch(
            f"/v1/webhook-endpoints/whe_{uuid.uuid4().hex}",
            content=b'{"description": "x"}',
            headers=auth(writer.secret, **TEXT),
        )
    assert_problem(refused, 415, "unsupported_media_type")
    assert refused.headers["accept-patch"] == "application/json"
    assert refused.headers["accept"] == "application/json"

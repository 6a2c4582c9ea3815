"""Request bodies in a content coding: 415 `unsupported_content_encoding` with
`Accept-Encoding: identity` (RFC 9110 sections 8.4 and 15.5.16), after the credential, and
nothing changes. Before, a gzip body was read as text (400 "not UTF-8") and a plain one
labelled gzip was executed."""

from __future__ import annotations

import gzip
import json

import pytest

from ledger.ledger_api_support import Keys, account_id, api, assert_problem, auth, make_keys

BODY = {"ledger": "USD", "code": 1}


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


def _accounts(client: object, key: str) -> list[object]:
    listed = client.get("/v1/accounts", headers=auth(key))  # type: ignore[attr-defined]
    assert listed.status_code == 200
    items: list[object] = listed.json()["items"]
    return items


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", lambda raw: gzip.compress(raw)),
        ("gzip", lambda raw: raw),  # mislabelled: plain JSON said to be gzip
        ("deflate", lambda raw: raw),
        ("identity, gzip", lambda raw: gzip.compress(raw)),
        ("BR", lambda raw: raw),
    ],
)
def test_a_coded_body_is_415_and_changes_nothing(
    database_url: str, keys: Keys, coding: str, encode: object
) -> None:
    raw = json.dumps({**BODY, "id": account_id()}).encode()
    with api(database_url) as client:
        response = client.post(
            "/v1/accounts",
            content=encode(raw),  # type: ignore[operator]
            headers=auth(
                keys.writer,
                **{"Content-Type": "application/json", "Content-Encoding": coding},
            ),
        )
        problem = assert_problem(response, 415, "unsupported_content_encoding")
        assert response.headers["accept-encoding"] == "identity"
        assert coding.split(",")[-1].strip().lower() in problem["detail"]
        assert _accounts(client, keys.reader) == []


def test_identity_is_no_coding(database_url: str, keys: Keys) -> None:
    raw = json.dumps({**BODY, "id": account_id()}).encode()
    with api(database_url) as client:
        response = client.post(
            "/v1/accounts",
            content=raw,
            headers=auth(
                keys.writer, **{"Content-Type": "application/json", "Content-Encoding": "identity"}
            ),
        )
    assert response.status_code == 201, response.text


def test_the_credential_comes_first(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        anonymous = client.post(
            "/v1/accounts",
            content=gzip.compress(json.dumps(BODY).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        reader = client.post(
            "/v1/accounts",
            content=gzip.compress(json.dumps(BODY).encode()),
            headers=auth(
                keys.reader, **{"Content-Type": "application/json", "Content-Encoding": "gzip"}
            ),
        )
    assert_problem(anonymous, 401, "unauthorized")
    assert_problem(reader, 403, "insufficient_scope")


def test_a_coded_body_to_no_route_is_still_404(database_url: str, keys: Keys) -> None:
    with api(database_url) as client:
        response = client.post(
            "/v1/no-such-thing",
            content=b"{}",
            headers=auth(
                keys.writer, **{"Content-Type": "application/json", "Content-Encoding": "gzip"}
            ),
        )
    assert response.status_code == 404


def test_the_problem_echoes_little_of_a_long_header(database_url: str, keys: Keys) -> None:
    codings = ", ".join(f"x{index}" + "y" * 500 for index in range(20))
    with api(database_url) as client:
        response = client.post(
            "/v1/accounts",
            content=json.dumps(BODY).encode(),
            headers=auth(
                keys.writer, **{"Content-Type": "application/json", "Content-Encoding": codings}
            ),
        )
    problem = assert_problem(response, 415, "unsupported_content_encoding")
    assert "x3" in problem["detail"] and "x4" not in problem["detail"]
    assert len(problem["detail"]) < 300

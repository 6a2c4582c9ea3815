"""JSON request bodies are I-JSON (RFC 7493): UTF-8 and no repeated member names
(`billfold.kit.http.bodies`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.errors import PROBLEM_JSON, install_problem_handlers
from billfold.kit.http.bodies import StrictJsonMiddleware, json_body_problem
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    app.add_middleware(StrictJsonMiddleware, body_max_bytes=1 << 20)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(_app())


def _post(client: TestClient, body: bytes, content_type: str = "application/json") -> Any:
    return client.post("/echo", content=body, headers={"content-type": content_type})


@pytest.mark.parametrize(
    "body",
    [b'{"amount": 1, "amount": 1000}', b'{"a": {"x": 1, "x": 2}}', b'[{"k": 1, "k": 1}]'],
    ids=["top-level", "nested", "in-an-array"],
)
def test_a_repeated_member_name_is_refused(client: TestClient, body: bytes) -> None:
    response = _post(client, body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"][0]["type"] == "json_duplicate_name"


def test_a_long_repeated_name_is_echoed_only_in_part(client: TestClient) -> None:
    name = "n" * 10_000
    response = _post(client, f'{{"{name}": 1, "{name}": 2}}'.encode())
    assert response.status_code == 422
    assert len(response.json()["errors"][0]["message"]) < 200


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_json_that_is_not_utf8_is_refused(client: TestClient, encoding: str) -> None:
    response = _post(client, '{"amount": 1}'.encode(encoding))
    assert response.status_code == 400
    assert response.json()["code"] == "body_unreadable"


def test_a_body_that_is_i_json_reaches_the_route_unchanged(client: TestClient) -> None:
    body = {"name": "café", "nested": {"a": [1, 2, {"b": None}]}, "n": 10**30}
    response = _post(client, json.dumps(body, ensure_ascii=False).encode())
    assert (response.status_code, response.json()) == (200, body)
    merge = _post(client, b'{"x": 1}', "application/merge-patch+json; charset=utf-8")
    assert merge.json() == {"x": 1}
    with_bom = _post(client, b'\xef\xbb\xbf{"x": 2}')  # RFC 8259: a reader may ignore it
    assert with_bom.json() == {"x": 2}


def test_malformed_json_and_other_media_types_are_left_to_the_route(client: TestClient) -> None:
    malformed = _post(client, b'{"a": 1,')
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["type"] == "json_invalid"
    plain = _post(client, b'{"a": 1, "a": 2}', "text/plain")
    assert plain.status_code == 415


_allowed = st.characters(
    exclude_categories=["Cs"],  # surrogates
    exclude_characters=[chr(0), *map(chr, range(0xFDD0, 0xFDF0))],
).filter(lambda c: ord(c) & 0xFFFE != 0xFFFE)  # the last two of each plane
_names = st.text(_allowed, max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(_allowed, max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_names, _values, max_size=5))
def test_json_written_from_an_object_is_accepted(value: dict[str, Any]) -> None:
    assert json_body_problem(json.dumps(value).encode()) is None
    assert json_body_problem(json.dumps(value, ensure_ascii=False).encode()) is None


@given(st.dictionaries(_names, _values, min_size=1, max_size=5), st.data())
def test_any_repeated_name_is_found(value: dict[str, Any], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(value)))
    members = [json.dumps(k) + ":" + json.dumps(v) for k, v in value.items()]
    members.append(json.dumps(name) + ":" + json.dumps(value[name]))
    problem = json_body_problem(("{" + ",".join(members) + "}").encode())
    assert problem is not None and problem.code == "validation_failed"


FORBIDDEN_CODE_POINTS = ["\x00", "\ud800", "\udfff", "\ufdd0", "\ufdef", "\ufffe", "\U0010ffff"]


_FORBIDDEN_CASES = [
    (code_point, ensure_ascii)
    for code_point in FORBIDDEN_CODE_POINTS
    for ensure_ascii in (True, False)
    # A lone surrogate has no UTF-8 form: it can only be sent escaped.
    if ensure_ascii or not 0xD800 <= ord(code_point) <= 0xDFFF
]


@pytest.mark.parametrize(("code_point", "ensure_ascii"), _FORBIDDEN_CASES, ids=ascii)
@pytest.mark.parametrize("where", ["value", "name", "nested"])
def test_a_forbidden_code_point_is_refused(
    client: TestClient, code_point: str, ensure_ascii: bool, where: str
) -> None:
    """RFC 7493 section 2.1: no surrogates or noncharacters; and no U+0000 (PostgreSQL
    cannot store it)."""
    text = f"a{code_point}b"
    value = {
        "value": {"name": text},
        "name": {text: 1},
        "nested": {"list": [1, [{"deep": ["ok", text]}]]},
    }[where]
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    response = _post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["type"] == "json_forbidden_code_point"


def test_escapes_of_allowed_code_points_pass(client: TestClient) -> None:
    """A surrogate pair is one code point (here U+1F600); a backslash before `u0000` is
    text, not an escape."""
    body = b'{"smile": "\\ud83d\\ude00", "text": "\\\\u0000", "a": "\\u00e9"}'
    response = _post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"smile": "\U0001f600", "text": "\\u0000", "a": "\u00e9"}


@given(st.dictionaries(_names, _values, min_size=1, max_size=5), st.data())
def test_any_forbidden_code_point_is_found(value: dict[str, Any], data: st.DataObject) -> None:
    code_point = data.draw(st.sampled_from(FORBIDDEN_CODE_POINTS))
    name = data.draw(st.sampled_from(sorted(value)))
    value[name] = [value[name], f"x{code_point}"]
    problem = json_body_problem(json.dumps(value).encode())
    assert problem is not None and problem.code == "validation_failed"


def test_the_api_refuses_a_repeated_field_and_opens_nothing(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'bodies.db'}"
    with TestClient(create_app(Settings(database_url=database_url))) as api:
        tenant = bootstrap_tenant(database_url, name="Bodies")
        key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope)).secret
        headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
        refused = api.post(
            "/v1/accounts",
            content=b'{"ledger": "USD", "ledger": "EUR", "code": 1}',
            headers=headers,
        )
        listed = api.get("/v1/accounts", headers=headers).json()["items"]
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["type"] == "json_duplicate_name"
    assert listed == []

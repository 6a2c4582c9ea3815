"""The credential is checked before the body: on every route that requires one, a caller
without a valid credential gets 401 (with its `WWW-Authenticate` challenge) whatever its
body, and learns nothing about the body's validity; a valid credential gets the body's
problem as before (`billfold.kit.http.bodies`). Public routes answer the body as before."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.errors import PROBLEM_JSON
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key

_PATH_PARAMETER = re.compile(r"{([a-z_]+)}")
_WRITES = ("post", "put", "patch")
WRONG_KEY = "Bearer bf_test_" + "0" * 32 + "_" + "x" * 40

MALFORMED = b'{"ledger": "USD", "code": 1,'
REPEATED = b'{"ledger": "USD", "ledger": "EUR", "code": 1}'
LONG_INTEGER = b'{"ledger": "USD", "code": ' + b"9" * 5_000 + b"}"
HUGE_EXPONENT = b'{"ledger": "USD", "code": 1e999999}'
LONG_FRACTION = b'{"ledger": "USD", "code": 0.' + b"1" * 5_000 + b"}"

# name: (body, status and error type (or problem code) for a caller with a valid key)
BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed": (MALFORMED, 422, "json_invalid"),
    "duplicate-name": (REPEATED, 422, "json_duplicate_name"),
    "nul": (b'{"ledger": "US\\u0000D", "code": 1}', 422, "json_forbidden_code_point"),
    "utf-16": ('{"ledger": "USD", "code": 1}'.encode("utf-16"), 400, "body_unreadable"),
    "long-integer": (LONG_INTEGER, 422, "json_number_out_of_range"),
    "huge-exponent": (HUGE_EXPONENT, 422, "json_number_out_of_range"),
    "nan": (b'{"ledger": "USD", "code": NaN}', 422, "json_invalid"),
    "nested-too-deep": (b"[" * 100_000 + b"]" * 100_000, 400, "body_unreadable"),
    "long-fraction": (LONG_FRACTION, 422, "int_from_float"),
}
ROUTES = ("/v1/accounts", "/v1/transfers")


@dataclass(frozen=True)
class Api:
    client: TestClient
    key: str


@pytest.fixture(scope="module")
def api(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    path = tmp_path_factory.mktemp("auth-before-body") / "billfold.db"
    shutil.copyfile(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    tenant = bootstrap_tenant(database_url, name="Bodies")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope)).secret
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield Api(client, key)


def _post(api: Api, path: str, body: bytes, authorization: str | None, **headers: str) -> Any:
    sent = {"content-type": "application/json", **headers}
    if authorization is not None:
        sent["authorization"] = authorization
    return api.client.post(path, content=body, headers=sent)


def _assert_unauthorized(response: Any, *, token_presented: bool) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer realm="), challenge
    assert ('error="invalid_token"' in challenge) is token_presented, challenge
    problem = response.json()
    assert problem["code"] == "unauthorized"
    assert "errors" not in problem


def _kinds(response: Any) -> set[str]:
    """The error types of a `validation_failed` problem, else its code."""
    problem = response.json()
    if "errors" in problem:
        return {str(error["type"]) for error in problem["errors"]}
    return {str(problem["code"])}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", ROUTES)
def test_an_anonymous_caller_gets_401_whatever_the_body(api: Api, path: str, name: str) -> None:
    response = _post(api, path, BAD_BODIES[name][0], None)
    _assert_unauthorized(response, token_presented=False)
    assert response.headers["www-authenticate"] == 'Bearer realm="billfold"'


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", ROUTES)
def test_a_wrong_key_gets_401_whatever_the_body(api: Api, path: str, name: str) -> None:
    response = _post(api, path, BAD_BODIES[name][0], WRONG_KEY)
    _assert_unauthorized(response, token_presented=True)
    assert response.headers["www-authenticate"] == 'Bearer realm="billfold", error="invalid_token"'


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", ROUTES)
def test_a_valid_key_gets_the_body_problem(api: Api, path: str, name: str) -> None:
    body, status, kind = BAD_BODIES[name]
    response = _post(api, path, body, f"Bearer {api.key}")
    assert response.status_code == status, response.text
    assert kind in _kinds(response), response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "ratelimit" in response.headers  # counted, as every admitted request is


def test_an_idempotency_key_changes_nothing(api: Api) -> None:
    anonymous = _post(api, "/v1/accounts", MALFORMED, None, **{"Idempotency-Key": "k-anon"})
    wrong = _post(api, "/v1/accounts", REPEATED, WRONG_KEY, **{"Idempotency-Key": "k-wrong"})
    valid = _post(
        api, "/v1/accounts", LONG_INTEGER, f"Bearer {api.key}", **{"Idempotency-Key": "k-ok"}
    )
    _assert_unauthorized(anonymous, token_presented=False)
    _assert_unauthorized(wrong, token_presented=True)
    assert (valid.status_code, _kinds(valid)) == (422, {"json_number_out_of_range"})


def test_a_refused_number_writes_nothing(api: Api) -> None:
    for body in (LONG_INTEGER, HUGE_EXPONENT):
        assert _post(api, "/v1/accounts", body, f"Bearer {api.key}").status_code == 422
    listed = api.client.get("/v1/accounts", headers={"Authorization": f"Bearer {api.key}"})
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("body", "kind"), [(MALFORMED, "json_invalid"), (REPEATED, "json_duplicate_name")]
)
def test_a_public_route_answers_the_body_as_before(api: Api, body: bytes, kind: str) -> None:
    response = _post(api, "/v1/operators/login", body, None)
    assert (response.status_code, _kinds(response)) == (422, {kind})


def _concrete(path: str) -> str:
    return _PATH_PARAMETER.sub(lambda match: f"x_{uuid.uuid4().hex}", path)


def _guarded_writes(api: Api) -> list[tuple[str, str]]:
    """Every write operation the OpenAPI document says requires a credential."""
    paths = api.client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path)
        for path, item in paths.items()
        for method, operation in item.items()
        if method in _WRITES and operation.get("security")
    ]


def test_every_guarded_write_checks_the_credential_before_the_body(api: Api) -> None:
    """API keys, end users' access tokens and operators' sessions alike."""
    operations = _guarded_writes(api)
    assert len(operations) > 50
    for method, path in operations:
        for body in (MALFORMED, REPEATED, LONG_INTEGER):
            for authorization in (None, WRONG_KEY):
                response = api.client.request(
                    method,
                    _concrete(path),
                    content=body,
                    headers={"content-type": "application/json"}
                    | ({} if authorization is None else {"authorization": authorization}),
                )
                assert response.status_code == 401, (method, path, response.text)
                assert "www-authenticate" in response.headers, (method, path)
                assert "errors" not in response.json(), (method, path)

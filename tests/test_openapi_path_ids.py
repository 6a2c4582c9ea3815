"""Every `{…_id}` path parameter in the OpenAPI document states the id's form, and the form
is the one its route parses.

The routes take ids as plain strings and parse them themselves, so the document said only
`string` of them: a client generated from it, or a tester sending what it allows, could
not know that `/v1/payments/{payment_id}` wants `pay_` and 32 lowercase hex digits. The
patterns come from one table (`billfold.app.PATH_ID_PREFIXES`); this test holds the table
to the routes: on every route a caller's credential reaches, an id of the documented form
gets past the parser (never 400 `invalid_id`), and the same id with another prefix does
not."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from billfold.app import PATH_ID_PREFIXES, create_app
from billfold.identity.operators.types import Role
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key
from identity.operators.operators_support import operator

NOT_IDS = {"provider", "purpose"}
"""Path parameters that are names, not ids: a payment provider's, a consent's purpose."""
_PATTERN = re.compile(r"\^([a-z]+)_\[0-9a-f\]\{32\}\$")
_PARAMETER = re.compile(r"{([a-z_]+)}")
_UNREACHED = {401, 403}
"""Answers that mean the credential stopped the request before its route parsed an id."""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(database_url="sqlite://")).openapi()


def _path_parameters(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    yield method, path, parameter


def test_every_id_in_a_path_documents_its_form(document: dict[str, Any]) -> None:
    names = set()
    for method, path, parameter in _path_parameters(document):
        name = parameter["name"]
        names.add(name)
        if name in NOT_IDS:
            if name == "purpose":  # what a consent's purpose may be, as granted
                assert parameter["schema"]["pattern"] == "^[a-z][a-z0-9_]{0,63}$"
            continue
        schema = parameter["schema"]
        found = _PATTERN.fullmatch(schema.get("pattern", ""))
        assert found is not None, (method, path, name, schema)
        assert found.group(1) == PATH_ID_PREFIXES[name]
        assert all(re.fullmatch(schema["pattern"], example) for example in schema["examples"])
        assert "invalid_id" in parameter["description"]
    assert names - NOT_IDS == set(PATH_ID_PREFIXES), "a prefix no route uses, or a new name"


def _concrete(path: str, ids: dict[str, str]) -> str:
    return _PARAMETER.sub(lambda match: ids.get(match.group(1), match.group(0)), path)


def _well_formed(name: str) -> str:
    return f"{PATH_ID_PREFIXES[name]}_{uuid.uuid4().hex}"


def test_each_route_parses_exactly_the_documented_form(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, name="Ids")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope)).secret
    staff = operator(database_url, tenant_id=tenant.tenant.id, roles=list(Role))
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        as_key = {"Authorization": f"Bearer {key}"}
        signed_up = client.post(
            "/v1/users",
            json={"email": "ids@example.com", "password": "correct horse battery"},
            headers={**as_key, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert signed_up.status_code == 201, signed_up.text
        session = client.post(
            "/v1/sessions",
            json={
                "tenant_id": f"ten_{tenant.tenant.id.hex}",
                "mode": "test",
                "identifier": "ids@example.com",
                "password": "correct horse battery",
            },
        )
        assert session.status_code == 200, session.text
        credentials = [
            as_key,
            staff.headers,
            {"Authorization": f"Bearer {session.json()['tokens']['access_token']}"},
        ]
        document = client.get("/openapi.json").json()
        reached = checked = 0
        for path, item in document["paths"].items():
            names = [name for name in _PARAMETER.findall(path) if name not in NOT_IDS]
            for method in item if names else ():
                ids = {name: _well_formed(name) for name in names}
                for headers in credentials:
                    answer = _call(client, method, _concrete(path, ids), headers)
                    if answer.status_code not in _UNREACHED:
                        break
                else:
                    continue  # no credential of these reaches it (a tenant's admin route)
                reached += 1
                assert _code(answer) != "invalid_id", (method, path, answer.text)
                if _code(answer) == "validation_failed":
                    continue  # the body was refused before the route ran: nothing parsed
                checked += 1
                for name in names:
                    other = {**ids, name: f"zzz_{uuid.uuid4().hex}"}
                    refused = _call(client, method, _concrete(path, other), headers)
                    assert refused.status_code == 400, (method, path, name, refused.text)
                    assert _code(refused) == "invalid_id", (method, path, name)
    assert reached >= 55 and checked >= 40, (reached, checked)


def _call(client: TestClient, method: str, url: str, headers: dict[str, str]) -> Any:
    extra = {"Idempotency-Key": uuid.uuid4().hex} if method == "post" else {}
    body = {"json": {}} if method in {"post", "put", "patch"} else {}
    return client.request(method, url, headers={**headers, **extra}, **body)


def _code(response: Any) -> str | None:
    if response.headers.get("content-type") != "application/problem+json":
        return None
    code: str | None = response.json().get("code")
    return code

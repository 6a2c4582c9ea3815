"""A query parameter a route does not declare is 400 `unknown_query_parameter`, on every
route: FastAPI ignored them, so `GET /v1/events?types=…` (a typo for `type`) listed every
event unfiltered and `?limt=5` served the default page. The caller's credential is checked
first; a refused request keeps no `Idempotency-Key`; the OpenAPI document lists the 400."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from billfold.identity.types import Scope
from billfold.kit.errors import PROBLEM_JSON, install_problem_handlers
from billfold.kit.http.query import (
    UNKNOWN_LISTED_MAX,
    UnknownQueryParameterMiddleware,
    unknown_query_names,
)
from events.events_api_support import auth, client, post_transfer, wait_for
from identity.identity_support import bootstrap_tenant, create_key
from ledger.ledger_api_support import assert_problem

_PATH_PARAMETER = re.compile(r"{([a-z_]+)}")
UNKNOWN = "zz_not_a_parameter"


def _every_scope_key(database_url: str) -> str:
    tenant = bootstrap_tenant(database_url, "Query parameters").tenant.id
    return create_key(database_url, tenant_id=tenant, scopes=list(Scope)).secret


def test_a_misspelt_filter_is_refused_not_ignored(database_url: str) -> None:
    key = _every_scope_key(database_url)
    with client(database_url) as api:
        post_transfer(api, key)
        wait_for(lambda: api.get("/v1/events", headers=auth(key)).json()["items"] != [])
        typo = api.get(
            "/v1/events", params={"types": "com.billfold.payment.captured.v1"}, headers=auth(key)
        )
        body = assert_problem(typo, 400, "unknown_query_parameter")
        assert body["unknown_parameters"] == ["types"]
        assert {"type", "aggregate", "cursor", "limit"} <= set(body["allowed_parameters"])
        assert "'types'" in body["detail"]
        spelt = api.get(
            "/v1/events", params={"type": "com.billfold.payment.captured.v1"}, headers=auth(key)
        )
        assert spelt.status_code == 200 and spelt.json()["items"] == []
        several = api.get(
            "/v1/events?limt=5&foo&%74ype=com.billfold.payment.captured.v1&limt=6",
            headers=auth(key),
        )
        assert assert_problem(several, 400, "unknown_query_parameter")["unknown_parameters"] == [
            "limt",
            "foo",
        ]
        head = api.head("/v1/events?types=x", headers=auth(key))
        assert head.status_code == 400
        anonymous = api.get("/v1/events?types=x")
        assert_problem(anonymous, 401, "unauthorized")
        assert "www-authenticate" in anonymous.headers


def test_a_refused_request_keeps_no_idempotency_key(database_url: str) -> None:
    """The corrected request may reuse the key: the refusal was never the key's answer."""
    key = _every_scope_key(database_url)
    headers = {**auth(key), "Idempotency-Key": "query-typo-1"}
    with client(database_url) as api:
        body = {"ledger": "USD", "code": 1}
        refused = api.post("/v1/accounts?expand=x", json=body, headers=headers)
        assert_problem(refused, 400, "unknown_query_parameter")
        created = api.post("/v1/accounts", json=body, headers=headers)
        assert created.status_code == 201, created.text
        replayed = api.post("/v1/accounts", json=body, headers=headers)
        assert replayed.headers.get("idempotent-replayed") == "true"
        assert replayed.json() == created.json()


def _path(template: str, operation: dict[str, Any]) -> str:
    examples = {
        parameter["name"]: (parameter.get("schema", {}).get("examples") or ["x"])[0]
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "path"
    }
    return _PATH_PARAMETER.sub(lambda match: str(examples.get(match[1], "x")), template)


def test_every_route_refuses_an_unknown_query_parameter(database_url: str) -> None:
    """Each GET of the document, with a well-formed id in its path: 400 naming the unknown
    parameter, or, where the credential is refused (a route for end users or operators),
    the same refusal as without it. Every operation documents the 400."""
    key = _every_scope_key(database_url)
    with client(database_url) as api:
        document = api.get("/openapi.json").json()
        checked = 0
        for template, item in document["paths"].items():
            for method, operation in item.items():
                assert "400" in operation["responses"], (method, template)
                assert PROBLEM_JSON in operation["responses"]["400"]["content"]
                if method != "get":
                    continue
                path = _path(template, operation)
                answer = api.get(path, params={UNKNOWN: "1"}, headers=auth(key))
                if answer.status_code in (401, 403):
                    plain = api.get(path, headers=auth(key))
                    assert plain.status_code == answer.status_code, (template, plain.text)
                    continue
                body = assert_problem(answer, 400, "unknown_query_parameter")
                assert body["unknown_parameters"] == [UNKNOWN], template
                declared = {
                    parameter["name"]
                    for parameter in operation.get("parameters", [])
                    if parameter.get("in") == "query"
                }
                assert set(body["allowed_parameters"]) == declared, template
                checked += 1
        assert checked >= 30


class _Window(BaseModel):
    since: int | None = None
    until: int | None = Field(default=None, validation_alias=AliasChoices("until", "before"))


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def _page(limit: int | None = None, cursor: Annotated[str | None, Query()] = None) -> int:
    return limit or 0


def test_what_a_route_declares_is_read_from_its_dependencies_and_models() -> None:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(UnknownQueryParameterMiddleware)

    @app.get("/items")
    async def items(
        window: Annotated[_Window, Query()],
        page: Annotated[int, Depends(_page)],
        search: Annotated[str | None, Query(alias="q")] = None,
    ) -> dict[str, int]:
        return {"page": page, "until": window.until or 0}

    @app.get("/open")
    async def open_(extra: Annotated[_Open, Query()]) -> dict[str, int]:
        return {}

    api = TestClient(app)
    accepted = api.get("/items?limit=1&cursor=c&since=1&before=2&q=x")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"page": 1, "until": 2}  # read under its other name
    refused = api.get("/items?search=x")  # the name is its alias, `q`
    assert refused.status_code == 400
    assert refused.json()["unknown_parameters"] == ["search"]
    assert api.get("/open?anything=1").status_code == 200  # the model takes extra names
    assert api.get("/missing?x=1").status_code == 404


def test_names_are_read_as_the_route_reads_them_and_listed_within_bounds() -> None:
    declared = frozenset({"type", "limit"})
    assert unknown_query_names(b"%74ype=a&limit=1", declared) == []
    assert unknown_query_names(b"a+b=1&a%20b=2&=3&flag", declared) == ["a b", "", "flag"]
    app = FastAPI()
    app.add_middleware(UnknownQueryParameterMiddleware)

    @app.get("/items")
    async def items() -> dict[str, int]:
        return {}

    many = "&".join(f"{'n' * 100}{index}=1" for index in range(50))
    body = TestClient(app).get(f"/items?{many}").json()
    assert len(body["unknown_parameters"]) == UNKNOWN_LISTED_MAX
    assert all(len(name) <= 64 for name in body["unknown_parameters"])


@pytest.mark.parametrize("query", ["", "?"])
def test_an_empty_query_passes(query: str) -> None:
    app = FastAPI()
    app.add_middleware(UnknownQueryParameterMiddleware)

    @app.get("/items")
    async def items() -> dict[str, int]:
        return {}

    assert TestClient(app).get(f"/items{query}").status_code == 200


def test_a_single_valued_parameter_given_twice_is_refused_and_a_list_is_not() -> None:
    """FastAPI read the last of `?type=a&type=b`, silently: a filter the caller believed
    was `a or b` was `b` alone."""
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(UnknownQueryParameterMiddleware)

    @app.get("/items")
    async def items(
        kind: str | None = None, tags: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, Any]:
        return {"kind": kind, "tags": tags}

    api = TestClient(app)
    twice = api.get("/items?kind=a&tags=x&kind=b")
    assert twice.status_code == 400
    assert twice.headers["content-type"] == PROBLEM_JSON
    assert twice.json()["code"] == "repeated_query_parameter"
    assert twice.json()["repeated_parameters"] == ["kind"]
    listed = api.get("/items?kind=a&tags=x&tags=y")
    assert listed.status_code == 200 and listed.json() == {"kind": "a", "tags": ["x", "y"]}
    unknown_first = api.get("/items?kind=a&kind=b&nope=1")
    assert unknown_first.json()["code"] == "unknown_query_parameter"

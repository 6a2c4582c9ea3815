"""The OpenAPI document lists the errors each operation can answer, as problem+json with one
shared schema (`billfold.kit.http.openapi`), and what the API answers is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.errors import PROBLEM_JSON
from billfold.kit.http.openapi import PROBLEM_SCHEMA, install_error_documentation
from billfold.kit.http.rate_limit import throttle_sign_in
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key

_bearer = HTTPBearer(auto_error=False, scheme_name="Key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class Thing(BaseModel):
    name: str


def _small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: str, _key: Credentials) -> Thing:
        return Thing(name=thing_id)

    @app.get("/things")
    async def list_things(_key: Credentials, cursor: str | None = None) -> list[Thing]:
        return []

    @app.post("/things", status_code=201)
    async def create_thing(thing: Thing, _key: Credentials) -> Thing:
        return thing

    @app.post("/things/{thing_id}/archive")
    async def archive_thing(thing_id: str, _key: Credentials) -> Thing:
        return Thing(name=thing_id)

    @app.post(
        "/things/{thing_id}/review",
        status_code=201,
        responses={202: {"description": "Held for review: the same thing, pending."}},
    )
    async def review_thing(thing_id: str, _key: Credentials) -> Thing:
        return Thing(name=thing_id)

    @app.post("/sign-in", dependencies=[Depends(throttle_sign_in)])
    async def sign_in(thing: Thing) -> Thing:
        return thing

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    install_error_documentation(app)
    return app


def _statuses(document: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(code) for code in document["paths"][path][method]["responses"]}


def test_each_operation_lists_the_errors_of_what_it_has() -> None:
    document = _small_app().openapi()
    assert _statuses(document, "/things/{thing_id}", "get") == {
        *(200, 400, 401, 403, 404, 422, 429, 503)
    }
    assert _statuses(document, "/things", "get") == {200, 400, 401, 403, 422, 429, 503}
    assert _statuses(document, "/things", "post") == {
        *(201, 400, 401, 403, 409, 413, 415, 422, 429, 503)
    }
    assert _statuses(document, "/sign-in", "post") == {200, 400, 413, 415, 422, 429, 503}
    # No body to read, but a body sent is still bounded by the size limit.
    assert _statuses(document, "/things/{thing_id}/archive", "post") == {
        *(200, 400, 401, 403, 404, 409, 413, 422, 429, 503)
    }
    assert _statuses(document, "/health", "get") == {200, 400}  # an unknown query parameter


class Bounded(BaseModel):
    count: int = Field(ge=-(2**63), le=2**63 - 1)
    small: int | None = Field(default=None, gt=0, lt=500)


def test_integer_bounds_are_documented_exactly() -> None:
    """FastAPI's OpenAPI model turns bounds into floats: 2**63 - 1 became 2**63."""
    app = FastAPI()

    @app.post("/bounded")
    async def bounded(body: Bounded) -> Bounded:
        return body

    install_error_documentation(app)
    properties = app.openapi()["components"]["schemas"]["Bounded"]["properties"]
    assert properties["count"] == {
        **properties["count"],
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
    }
    assert [type(properties["count"][key]) for key in ("minimum", "maximum")] == [int, int]
    exclusive = properties["small"]["anyOf"][0]
    assert (exclusive["exclusiveMinimum"], exclusive["exclusiveMaximum"]) == (0, 500)
    assert type(exclusive["exclusiveMinimum"]) is int


def test_every_error_is_problem_json_with_the_shared_schema() -> None:
    app = _small_app()
    document = app.openapi()
    assert document["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for item in document["paths"].values():
        for operation in item.values():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert response["content"] == {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
                    assert response["description"]
    too_many = document["paths"]["/things"]["post"]["responses"]["429"]
    assert "Retry-After" in too_many["headers"]
    assert app.openapi() is document  # completed once, then served as it is


def _matches(template: str, path: str) -> bool:
    pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
    return re.match(pattern, path) is not None


def _concrete(template: str) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: f"{m.group(1)[:3]}_{'0' * 32}", template)


def test_what_the_api_answers_to_bad_requests_is_documented(tmp_path: Path) -> None:
    """Every operation of Billfold's API, asked anonymously, then with a full-scope API key
    and a body not sent as JSON: each status it answers is one its operation documents,
    and every error is problem+json."""
    database_url = f"sqlite:///{tmp_path / 'documented.db'}"
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        tenant = bootstrap_tenant(database_url, name="Documented")
        key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope)).secret
        document = client.get("/openapi.json").json()
        assert "HTTPValidationError" not in str(document)
        undocumented = []
        for template, item in document["paths"].items():
            for method, operation in item.items():
                documented = {int(code) for code in operation["responses"]}
                path = _concrete(template)
                tries = [client.request(method, path)]
                if "requestBody" in operation:
                    tries.append(
                        client.request(
                            method,
                            path,
                            content=b"name=x",
                            headers={
                                "Authorization": f"Bearer {key}",
                                "content-type": "text/plain",
                            },
                        )
                    )
                for response in tries:
                    if response.status_code >= 400:
                        assert response.headers["content-type"] == PROBLEM_JSON, template
                    if response.status_code not in documented:
                        undocumented.append((method, template, response.status_code))
        assert undocumented == []


def test_a_202_declared_without_a_body_documents_the_routes_answer() -> None:
    """The route sets 202 on the answer its model renders: documented bodiless, a client
    generated from the document dropped it."""
    responses = _small_app().openapi()["paths"]["/things/{thing_id}/review"]["post"]["responses"]
    assert responses["202"]["description"] == "Held for review: the same thing, pending."
    assert responses["202"]["content"] == responses["201"]["content"]
    assert responses["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }

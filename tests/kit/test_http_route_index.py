"""Dispatch by the path's leading segment (`billfold.kit.http.route_index`): every request
reaches the route the application's own router would have chosen, without trying the
routes of other segments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from billfold.app import create_app
from billfold.kit.http.route_index import install_route_index, path_key
from billfold.kit.settings import Settings


def _chosen(routes: list[BaseRoute], scope: Scope) -> tuple[str, object] | None:
    """What a router over `routes` serves `scope` with: the first full match (inside an
    included router, the route it selects), else the first partial one (405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(dict(scope))
        if match == Match.FULL:
            inner = getattr(route, "_match", None)
            return ("full", inner(dict(scope))[2] if inner else route)
        if match == Match.PARTIAL and partial is None:
            partial = ("partial", route)
    return partial


def _example(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def test_every_route_of_the_application_is_chosen_as_its_router_chose_it(
    tmp_path: Path,
) -> None:
    """For each route of Billfold's API and each of its methods, and for another method on
    the same path: the router of the path's key chooses what the application's router
    chooses (the same route, or the same partial match that makes a 405)."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'routes.db'}"))
    routers = app.state.route_index.routers()
    contexts = [
        context
        for route in app.router.routes
        for context in (
            route.effective_route_contexts()
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
    ]
    templates = {
        (getattr(context, "path_format", None) or getattr(context, "path", "/"), method)
        for context in contexts
        for method in (getattr(context, "methods", None) or {"GET"}) | {"PATCH"}
    }
    assert len(templates) > 150
    for template, method in sorted(templates):
        path = _example(template)
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "app": app}
        expected = _chosen(app.router.routes, scope)
        keyed = routers[path_key(path)]
        assert _chosen(keyed.routes, scope) == expected, (method, path)
        assert len(keyed.routes) < len(app.router.routes) or path_key(path) == "{"


@given(st.text(alphabet="/v1abc{}x", max_size=20))
def test_a_paths_key_is_its_first_segment_or_under_v1_its_first_two(path: str) -> None:
    key = path_key("/" + path)
    segments = ("/" + path).split("/")
    if segments[1] != "v1":
        assert key == ("{" if "{" in segments[1] else segments[1])
    else:
        second = segments[2] if len(segments) > 2 else ""
        assert key == ("{" if "{" in second else f"v1/{second}")


class CountingRouter(APIRouter):
    """Counts how often its routes were tried."""

    tried = 0

    def matches(self, scope: Scope) -> Any:
        CountingRouter.tried += 1
        return super().matches(scope)


def small_app(*, indexed: bool) -> tuple[FastAPI, APIRouter]:
    app = FastAPI()
    counted = CountingRouter(prefix="/v1")
    files = APIRouter(prefix="/v1")
    things = APIRouter(prefix="/v1")
    later = APIRouter(prefix="/v1")

    @counted.get("/others")
    async def others() -> dict[str, str]:
        return {"at": "others"}

    @files.get("/file-{number}")  # a parameter inside the keyed segment: any path's key
    async def file(number: str) -> dict[str, str]:
        return {"at": f"file {number}"}

    @things.post("/things", status_code=201)
    async def create_thing() -> dict[str, str]:
        return {"at": "created"}

    @things.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"at": thing_id}

    @later.get("/elsewhere")
    async def elsewhere() -> dict[str, str]:
        return {"at": "elsewhere"}

    @later.get("/file-7")  # after the files router: its template matches first
    async def seventh() -> dict[str, str]:
        return {"at": "seventh"}

    app.include_router(counted)
    app.include_router(files)
    app.include_router(things)
    app.include_router(later)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"at": "healthz"}

    if indexed:
        install_route_index(app)
    return app, later


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("POST", "/v1/things"),
        ("GET", "/v1/things/7"),
        ("PUT", "/v1/things"),  # 405
        ("GET", "/v1/things/"),  # 307 to /v1/things, then 405 for GET
        ("GET", "/v1/nothing"),  # 404
        ("GET", "/v1"),
        ("GET", "/"),
        ("GET", "/v1/others"),
        ("GET", "/v1/file-7"),  # the files router's template, as without the index
        ("GET", "/v1/file-8"),
    ],
)
def test_a_request_gets_what_the_unindexed_application_answers(method: str, path: str) -> None:
    answers = []
    for indexed in (False, True):
        app, _ = small_app(indexed=indexed)
        with TestClient(app) as client:
            response = client.request(method, path, follow_redirects=False)
            answers.append((response.status_code, response.headers.get("location"), response.text))
    assert answers[1] == answers[0]


def test_only_the_routes_of_the_paths_key_are_tried() -> None:
    """The counting router serves `/v1/others`: with the index it is not tried for
    `/v1/things` nor `/healthz`; without it, it is (it comes first)."""
    for indexed, tried in ((False, 2), (True, 0)):
        app, _ = small_app(indexed=indexed)
        with TestClient(app) as client:
            CountingRouter.tried = 0
            assert client.post("/v1/things").status_code == 201
            assert client.get("/healthz").status_code == 200
            assert CountingRouter.tried == tried, indexed


def test_a_route_added_to_an_included_router_after_the_first_request_is_found() -> None:
    """Its key already had a router (the things router), built from the routes at the first
    request: that router matches none of its routes, not even by path, and hands the
    request to the application's router, which finds it."""
    app, later = small_app(indexed=True)
    with TestClient(app) as client:
        assert client.get("/v1/things/7").json() == {"at": "7"}

        @later.post("/things/{thing_id}/special")
        async def special(thing_id: str) -> dict[str, str]:
            return {"at": f"special {thing_id}"}

        assert client.post("/v1/things/7/special").json() == {"at": "special 7"}
        assert client.get("/v1/things/8").json() == {"at": "8"}


def test_a_router_no_request_reached_has_not_been_built() -> None:
    """FastAPI builds an included router's effective routes (each route's dependencies
    analysed again) when a request first reaches it. The index reads the paths without
    them: building them all at the first request cost every new application a fifth of a
    second with Billfold's routes."""
    app, _ = small_app(indexed=True)
    with TestClient(app) as client:
        assert client.get("/v1/others").json() == {"at": "others"}

    def built(route: BaseRoute) -> bool:
        return getattr(route, "_effective_candidates_version", None) is not None

    included = [route for route in app.router.routes if hasattr(route, "original_router")]
    assert [built(route) for route in included] == [True, False, False, False]

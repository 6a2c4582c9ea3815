"""Dispatch by the path's leading segment: each request is matched against the routes that
could match it, not against every route of the application.

FastAPI tries an application's routes one after another until one matches, and with
FastAPI 0.165's included routers each route tried costs about 7 µs (scope bookkeeping
around the path's regular expression), twice over for the router that matches. With 155
routes, a request was matched for up to a millisecond before its handler ran (on a slow
machine: `GET /healthz` 1,034 µs, `GET /readyz` 1,129, `POST /v1/payments` 622, against
4, 6 and 20 through the index), more than everything else FastAPI does for it.

`install_route_index` puts a router middleware in front of the application's router (as
Starlette's `Router(middleware=...)` would). For an HTTP or WebSocket request it takes the
path's key (its first segment; under `/v1/`, its first two) and hands the request to a
router holding, in their order, only the application's routes with a path of that key,
and every route whose key is a path parameter. That router is the application's router
(a copy of it) over the same route objects, so matching, 405 for another method and the
trailing-slash redirect work as before; where it finds nothing, it hands the request to
the application's router, which tries every route and answers 404 as it did. A request
whose key no route has, a scope with a `root_path`, and lifespan events go to the
application's router directly.

The index is built at the first request (after the lifespan, so routes added at startup are
in it) and again whenever routes are added to the application. A route added afterwards to
a router that was already included (Billfold adds none) is found through the fallback when
no route of its segment's router matches its path; one that does (a 405 for another
method, say) answers instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Inclusion", "RouteIndex", "inclusion", "install_route_index", "path_key"]

VERSION_PREFIX = "v1"
"""The first segment under which routes are keyed by two segments, not one."""
_ANY = "{"
"""The key of a route whose key segment is a path parameter: it may match any path."""


def path_key(path: str) -> str:
    """The key of a request path or a route's path template: `/healthz` → `healthz`,
    `/v1/transfers/…` → `v1/transfers`; a keyed segment with a parameter in it (`{id}`,
    `file-{n}`) keys as `{`, which any path may match."""
    segments = path.split("/", 3)
    first = segments[1] if len(segments) > 1 else ""
    if first != VERSION_PREFIX:
        return _ANY if _ANY in first else first
    second = segments[2] if len(segments) > 2 else ""
    return _ANY if _ANY in second else f"{first}/{second}"


@dataclass(frozen=True, slots=True)
class Inclusion:
    """A router FastAPI included: its `routes`, served under `prefix`, with `tags`."""

    router: object
    prefix: str
    tags: tuple[str, ...]
    routes: Sequence[BaseRoute]


def inclusion(route: BaseRoute) -> Inclusion | None:
    """What `route` includes, if it is FastAPI's included router (None for any other
    route), read from the router as it was included, not from FastAPI's effective routes:
    those are built (every route's dependencies analysed again) for a router only when a
    request first reaches it, and building them all cost each new application a fifth of a
    second."""
    included = getattr(route, "original_router", None)
    context = getattr(route, "include_context", None)
    if included is None or context is None:
        return None
    return Inclusion(included, context.prefix, tuple(context.tags), included.routes)


def _paths(route: BaseRoute, prefix: str = "") -> Iterator[str]:
    """The path templates a top-level route serves: its own, or its included routes'
    under their prefixes."""
    included = inclusion(route)
    if included is not None:
        for child in included.routes:
            yield from _paths(child, prefix + included.prefix)
        return
    path = getattr(route, "path", None)
    full = prefix + path if isinstance(path, str) else ""
    yield full if full.startswith("/") else _ANY


class RouteIndex:
    """The router middleware: `app` is what the application's router called before."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self._app = app
        self._router = router
        self._indexed = -1
        """How many routes the application had when the index was built (-1: not yet)."""
        self._by_key: dict[str, Router] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("root_path"):
            await self._app(scope, receive, send)
            return
        chosen = self.routers().get(path_key(scope["path"]))
        if chosen is None:
            await self._app(scope, receive, send)
            return
        scope.setdefault("router", self._router)  # url_for sees every route
        await chosen.app(scope, receive, send)

    def routers(self) -> dict[str, Router]:
        """Each key's router, built again when routes were added to the application."""
        if len(self._router.routes) != self._indexed:
            self._by_key = _index(self._router.routes, self._router, fallback=self._app)
            self._indexed = len(self._router.routes)
        return self._by_key


def _index(routes: Iterable[BaseRoute], parent: Router, *, fallback: ASGIApp) -> dict[str, Router]:
    keyed: dict[str, list[BaseRoute]] = {}
    anywhere: list[BaseRoute] = []
    ordered = list(routes)
    for route in ordered:
        keys = {path_key(path) for path in _paths(route)}
        if _ANY in keys:
            anywhere.append(route)
        for key in keys - {_ANY}:
            keyed.setdefault(key, []).append(route)
    # A key's routes and the routes that may match any path, in the application's order.
    by_key: dict[str, Router] = {}
    for key, own in keyed.items():
        members = {id(route) for route in [*own, *anywhere]}
        chosen = [route for route in ordered if id(route) in members]
        by_key[key] = _router_like(parent, chosen, fallback=fallback)
    return by_key


def _router_like(parent: Router, routes: list[BaseRoute], *, fallback: ASGIApp) -> Router:
    """A copy of `parent` (its class and settings: the redirect of trailing slashes, form
    limits, …) over `routes`, which hands what it does not find to `fallback`."""
    router = type(parent).__new__(type(parent))
    router.__dict__.update(parent.__dict__)
    router.routes = routes
    router.default = fallback
    router.middleware_stack = router.app
    return router


def install_route_index(app: FastAPI) -> RouteIndex:
    """Dispatch `app`'s requests by key (see the module); the index is also
    `app.state.route_index`. Once per application."""
    router = app.router
    if isinstance(router.middleware_stack, RouteIndex):
        raise RuntimeError("the route index is installed already")
    index = RouteIndex(router.middleware_stack, router)
    router.middleware_stack = index
    app.state.route_index = index
    return index

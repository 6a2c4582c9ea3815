"""The request methods of RFC 9110 that FastAPI leaves to the application: HEAD wherever GET
is served, and a 405 whose `Allow` lists every method of its path.

- **HEAD** (RFC 9110 section 9.3.2): a general-purpose server must support it, and it is
  GET without the body. FastAPI's routes answer only the methods they declare, so a HEAD
  of any Billfold resource was a 405. `MethodsMiddleware` serves a HEAD of a path that has
  a GET route and no HEAD route as that GET (authentication, rate limit and status
  included), and sends the response's status and headers without its body.
- **Allow** (RFC 9110 section 15.5.6): a 405 must list the target resource's supported
  methods. Starlette answers a 405 from the first route whose path matched, so a path
  served by two routes (`GET /v1/accounts` and `POST /v1/accounts`) listed only one of
  them. The middleware lets the router's 405 through with `Allow` set to every method of
  every route whose path matches (and HEAD beside GET).

- **501** (RFC 9110 sections 9.1 and 15.6.2): a method the server implements for no
  resource at all (`OPTIONS`, `TRACE`, `CONNECT`, `PROPFIND`, a made-up one) is 501
  `method_not_implemented`, whatever the path; 405 is for a method the server implements
  elsewhere but not at this path. Starlette answered both 405 (or 404 on an unknown path).

These cost nothing on other requests: the routes are looked at only for a HEAD or a 405,
and the methods implemented anywhere once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MethodsMiddleware", "allowed_methods", "install_methods"]


def _served(route: BaseRoute) -> Iterator[tuple[re.Pattern[str], frozenset[str]]]:
    """(path pattern, methods) of what a top-level route serves: its own, or its included
    routes' (FastAPI's included routers). Routes without methods (mounts, websockets)
    serve no HTTP method of their own here."""
    contexts = getattr(route, "effective_route_contexts", None)
    parts: list[Any] = list(contexts()) if contexts is not None else [route]
    for part in parts:
        pattern = getattr(part, "path_regex", None)
        methods = getattr(part, "methods", None)
        if isinstance(pattern, re.Pattern) and methods:
            yield pattern, frozenset(methods)


def _declared(router: Router, path: str) -> set[str]:
    """The methods `router`'s routes declare for `path`."""
    methods: set[str] = set()
    for route in router.routes:
        for pattern, served in _served(route):
            if pattern.match(path):
                methods |= served
    return methods


def allowed_methods(router: Router, path: str) -> frozenset[str]:
    """Every method served at `path`: those its routes declare, and HEAD wherever GET is."""
    methods = _declared(router, path)
    if "GET" in methods:
        methods.add("HEAD")
    return frozenset(methods)


class MethodsMiddleware:
    """A router middleware (see the module); `app` is what the router called before."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self._app = app
        self._router = router
        self._implemented: frozenset[str] | None = None

    def implemented(self) -> frozenset[str]:
        """Every method some route serves (HEAD wherever GET is); read at the first
        request, once every route is in place."""
        if self._implemented is None:
            methods = {
                method
                for route in self._router.routes
                for _, served in _served(route)
                for method in served
            }
            if "GET" in methods:
                methods.add("HEAD")
            self._implemented = frozenset(methods)
        return self._implemented

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if scope["method"] not in self.implemented():
            raise HTTPException(501, detail=f"{scope['method']} is served for no resource.")
        if scope["method"] == "HEAD":
            declared = _declared(self._router, scope["path"])
            if "GET" in declared and "HEAD" not in declared:
                await self._serve_head(scope, receive, send)
                return
        try:
            await self._app(scope, receive, send)
        except HTTPException as error:
            if error.status_code != 405:
                raise
            allowed = ", ".join(sorted(allowed_methods(self._router, scope["path"])))
            raise HTTPException(405, headers={**(error.headers or {}), "Allow": allowed}) from None

    async def _serve_head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The GET's status and headers; its body is never sent, and the GET ends at its
        first part of it: a stream (Server-Sent Events) would otherwise run on unread."""

        async def send_head(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            await send({"type": "http.response.body", "body": b""})
            if message.get("more_body", False):
                raise _HeadSent

        try:
            await self._app({**scope, "method": "GET"}, receive, send_head)
        except* _HeadSent:
            pass  # the response is complete; the rest of the body is not wanted


class _HeadSent(Exception):  # noqa: N818 (a signal that ends the GET, not an error)
    """Ends a GET served for a HEAD once its head is sent and more body would follow."""


def install_methods(router: Router) -> MethodsMiddleware:
    """Put `MethodsMiddleware` in front of `router`'s current dispatch (once)."""
    if isinstance(router.middleware_stack, MethodsMiddleware):
        raise RuntimeError("the methods middleware is installed already")
    middleware = MethodsMiddleware(router.middleware_stack, router)
    router.middleware_stack = middleware
    return middleware

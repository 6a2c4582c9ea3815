"""Query parameters a route does not declare are refused: 400 `unknown_query_parameter`.

FastAPI reads the query parameters a route declares and ignores every other, so a typo
changed what a request meant without a word: `GET /v1/events?types=…` (for `type`) listed
every event unfiltered, `?limt=5` served the default page size, and a client could not tell
a filter the server applied from one it never knew. `UnknownQueryParameterMiddleware`
answers a request to a route with a query parameter the route does not declare (its own or
its dependencies', as the OpenAPI document lists them) with a problem naming the unknown
names (`unknown_parameters`, the first `UNKNOWN_LISTED_MAX`) and the route's own
(`allowed_parameters`), as Stripe does. A name is read as the route reads it
(percent-decoded, `+` a space); a value is never judged here.

On a route that requires a credential the check runs only once the route's credential
checks admit the caller (`billfold.kit.http.bodies`' rule): an anonymous caller gets the
route's 401 and learns nothing of its parameters. It sits outside `IdempotencyMiddleware`,
so a refused request takes no `Idempotency-Key`: the corrected request may reuse it.
Requests without a query string, paths no route serves and routes outside FastAPI's
(`/docs`) pass as before; a HEAD is judged as the GET it is served as.

What a route declares is read once per route (its FastAPI `Dependant`, FastAPI 0.165's as
pinned by the lock file) and only for requests that carry a query string, among the
routes of the path's segment when the route index is installed (`route_index`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from billfold.kit.auth import counted_rate_limit_fields
from billfold.kit.errors import BadRequest
from billfold.kit.http.bodies import credential_refusal
from billfold.kit.http.problems import send_problem
from billfold.kit.http.route_index import RouteIndex, path_key

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

__all__ = [
    "UNKNOWN_LISTED_MAX",
    "DeclaredQuery",
    "RepeatedQueryParameter",
    "UnknownQueryParameter",
    "UnknownQueryParameterMiddleware",
    "declared_query_names",
    "repeated_query_names",
    "unknown_query_names",
]

UNKNOWN_LISTED_MAX = 10
"""Unknown names a problem lists (a query string may hold thousands)."""
NAME_SHOWN_MAX = 64
"""Characters of each unknown name a problem shows."""
_ROUTES_KEPT_MAX = 10_000
"""Routes whose declared names are kept (an application has a few hundred)."""


class UnknownQueryParameter(BadRequest):
    code = "unknown_query_parameter"
    title = "Unknown query parameter"


class RepeatedQueryParameter(BadRequest):
    code = "repeated_query_parameter"
    title = "Query parameter given more than once"


def _query_fields(dependant: Dependant) -> Iterator[Any]:
    """The query parameters of `dependant` and of every dependency under it, with a
    parameter model (`Annotated[Model, Query()]`) opened into its fields."""
    from fastapi.dependencies.utils import _get_flat_fields_from_params

    pending = [dependant]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield from _get_flat_fields_from_params(current.query_params)
        pending.extend(current.dependencies)


def _names(field: Any) -> Iterator[str]:
    """The names a request may give `field` under: its alias, or its alias choices."""
    from pydantic import AliasChoices

    yield str(field.alias)
    validation = getattr(field.field_info, "validation_alias", None)
    if isinstance(validation, str):
        yield validation
    elif isinstance(validation, AliasChoices):
        yield from (choice for choice in validation.choices if isinstance(choice, str))


def _accepts_any(dependant: Dependant) -> bool:
    """Whether a query parameter model of `dependant` takes extra names itself."""
    from fastapi.dependencies.utils import _get_param_model

    pending = [dependant]
    while pending:
        current = pending.pop()
        for field in current.query_params:
            model = _get_param_model(field)
            if model is not None and model.model_config.get("extra") in ("allow", "forbid"):
                return True  # the model answers extra names (keeps them, or 422)
        pending.extend(current.dependencies)
    return False


@dataclass(frozen=True, slots=True)
class DeclaredQuery:
    """The query parameter names a route reads, and those of them that take a list (which
    may be given more than once)."""

    names: frozenset[str]
    repeatable: frozenset[str]


def declared_query_names(dependant: Dependant) -> DeclaredQuery | None:
    """The query parameter names a route (`dependant`) reads; None when it takes any."""
    from fastapi._compat.shared import field_annotation_is_sequence

    if _accepts_any(dependant):
        return None
    fields = list(_query_fields(dependant))
    return DeclaredQuery(
        names=frozenset(name for field in fields for name in _names(field)),
        repeatable=frozenset(
            name
            for field in fields
            if field_annotation_is_sequence(field.field_info.annotation)
            for name in _names(field)
        ),
    )


def _query_names(query_string: bytes) -> list[str]:
    """The names in `query_string` as Starlette reads them, repeats included."""
    return [name for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)]


def unknown_query_names(query_string: bytes, declared: frozenset[str]) -> list[str]:
    """The names in `query_string` (as Starlette reads it) that `declared` lacks, each
    once, in their order."""
    return list(dict.fromkeys(name for name in _query_names(query_string) if name not in declared))


def repeated_query_names(query_string: bytes, declared: DeclaredQuery) -> list[str]:
    """The declared single-valued names `query_string` gives more than once, each once, in
    their order: FastAPI would read only the last, silently (`?type=a&type=b` filtered on
    `b` alone)."""
    counts = Counter(_query_names(query_string))
    return [
        name
        for name, count in counts.items()
        if count > 1 and name in declared.names and name not in declared.repeatable
    ]


class UnknownQueryParameterMiddleware:
    """Refuses query parameters the route does not declare (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._declared: dict[int, tuple[Dependant, DeclaredQuery | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        found = _route_for(scope)
        dependant = getattr(found, "dependant", None) if found is not None else None
        declared = self._declared_by(dependant) if dependant is not None else None
        error = None if declared is None else _refusal(scope["query_string"], declared)
        if error is None:
            await self.app(scope, receive, send)
            return
        refusal = await credential_refusal(scope, b"", receive, only_where_body_read=False)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await send_problem(error, scope, receive, send, headers=counted_rate_limit_fields(scope))

    def _declared_by(self, dependant: Dependant) -> DeclaredQuery | None:
        kept = self._declared.get(id(dependant))
        if kept is not None and kept[0] is dependant:
            return kept[1]
        if len(self._declared) >= _ROUTES_KEPT_MAX:
            self._declared.clear()
        names = declared_query_names(dependant)
        self._declared[id(dependant)] = (dependant, names)
        return names


def _refusal(query_string: bytes, declared: DeclaredQuery) -> BadRequest | None:
    unknown = unknown_query_names(query_string, declared.names)
    if unknown:
        return _problem(unknown, declared.names)
    repeated = repeated_query_names(query_string, declared)
    if repeated:
        shown = [name[:NAME_SHOWN_MAX] for name in repeated[:UNKNOWN_LISTED_MAX]]
        return RepeatedQueryParameter(
            f"Query parameter{'s' if len(repeated) > 1 else ''}"
            f" {', '.join(repr(name) for name in shown)} given more than once; each takes"
            " one value.",
            repeated_parameters=shown,
        )
    return None


def _problem(unknown: list[str], declared: frozenset[str]) -> UnknownQueryParameter:
    shown = [name[:NAME_SHOWN_MAX] for name in unknown[:UNKNOWN_LISTED_MAX]]
    named = ", ".join(repr(name) for name in shown)
    accepted = ", ".join(sorted(declared)) or "none"
    return UnknownQueryParameter(
        f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {named}; this route"
        f" takes: {accepted}.",
        unknown_parameters=shown,
        allowed_parameters=sorted(declared),
    )


def _candidates(scope: Scope) -> Iterable[Any]:
    """The routes that may serve the request: its path segment's, when the route index
    is installed (`route_index`), else all of the application's."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    index = getattr(getattr(app, "state", None), "route_index", None)
    if isinstance(index, RouteIndex):
        keyed = index.routers().get(path_key(scope["path"]))
        if keyed is not None:
            return keyed.routes
    routes = getattr(router, "routes", None)
    return routes if isinstance(routes, list) else []


def _route_for(scope: Scope) -> Any | None:
    """The route (FastAPI's `RouteContext`) that serves the request, or None; a HEAD is
    served as its path's GET where no route declares HEAD (`methods`)."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Match

    routes = list(iter_route_contexts(list(_candidates(scope))))
    methods = [scope["method"], "GET"] if scope["method"] == "HEAD" else [scope["method"]]
    for method in methods:
        asked = {**scope, "method": method}
        for route in routes:
            match, _ = route.matches(asked)
            if match == Match.FULL:
                return route
    return None

"""The OpenAPI document lists the errors every operation can answer, as they are sent.

FastAPI documents what each route declares. The errors the platform raises around the
routes were missing from most operations: 401, 403 and 429 of the credential checks, 400,
413 and 415 of a request's framing and `Idempotency-Key`, 409 and 422 of idempotency, 400
and 404 of a malformed or unknown id. Routes that declare no errors were documented with
FastAPI's own 422 (`application/json`, `HTTPValidationError`), which Billfold never sends.
The 503 of a rate limiter kept in Redis that does not answer (every credential's request and
every throttled sign-in) and of an idempotency store too busy to take a key were missing too.

FastAPI passes every schema through its `OpenAPI` model, whose `minimum` and `maximum` are
floats: `le=2**63 - 1` came out as `9.223372036854776e+18`, that is 2**63, so the document
allowed values one above what the request models accept (and 2**127 for an amount).
`install_error_documentation` puts back the exact integer bounds of the component schemas.

`document_errors` completes a generated document: every operation gets the errors of what
it has (a credential scheme, a body, path or query parameters, a `cursor`, a method that
takes an `Idempotency-Key`), and every
error response, declared or added, is `application/problem+json` with one shared `Problem`
schema. It also documents the headers the platform adds around the routes: every response's
`X-Request-Id`, and on a credential's POST, PUT, PATCH or DELETE the `Idempotency-Key` it
takes and the `Idempotent-Replayed` of a replay (a client generated from the document knew
of neither).
`install_error_documentation` applies it to an application's document once, when it is
first generated, with `document_path_ids`: routes take their ids as plain strings and parse
them themselves (a malformed one is 400 `invalid_id`), so the document said only `string`
of the 60-odd `{…_id}` path parameters; each now states the id's exact form.
"""

from __future__ import annotations

import copy
import http
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from billfold.kit.errors import ERRORS_LISTED_MAX, PROBLEM_JSON
from billfold.kit.http.idempotency import KEYED_METHODS
from billfold.kit.http.idempotency_models import IDEMPOTENCY_KEY_LENGTH_MAX
from billfold.kit.http.rate_limit import throttle_sign_in

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "IDEMPOTENCY_KEY_PARAMETER",
    "PROBLEM_SCHEMA",
    "document_errors",
    "document_path_ids",
    "exactly_one_of",
    "install_error_documentation",
    "problem_responses",
]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem details object: how every error is sent, with"
    " `Content-Type: application/problem+json`. Branch on `code`; extension members"
    " (`errors`, `required_scopes`, `retry_after_s`, …) depend on it.",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "The problem type: https://billfold.dev/problems/<code>.",
            "examples": ["https://billfold.dev/problems/unauthorized"],
        },
        "title": {"type": "string", "description": "A short summary of the problem type."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "This occurrence, for a person."},
        "instance": {
            "type": "string",
            "format": "uri-reference",
            "description": "The request's path.",
        },
        "code": {
            "type": "string",
            "description": "Stable and machine-readable: branch on this.",
            "examples": ["validation_failed"],
        },
        "errors": {
            "type": "array",
            "maxItems": ERRORS_LISTED_MAX,
            "description": "`validation_failed`: the invalid fields, the first"
            f" {ERRORS_LISTED_MAX}.",
            "items": {
                "type": "object",
                "required": ["loc", "message", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

_WHY = {
    400: "a malformed id, cursor, `Idempotency-Key` or request framing, a body that is"
    " not JSON text, a query parameter the operation does not take"
    " (`unknown_query_parameter`, naming it in `unknown_parameters`), or one that takes one"
    " value given twice (`repeated_query_parameter`)",
    401: "no valid credential (`WWW-Authenticate` names the scheme)",
    403: "the credential lacks a scope or permission, or belongs to another mode",
    404: "no such object for this caller",
    409: "a request with this `Idempotency-Key` is still running, or ran and showed a secret"
    " that is not kept (`idempotency_response_withheld`)",
    413: "the body is larger than the limit",
    415: "the body was not sent as JSON (`unsupported_media_type`), or was sent with a content"
    " coding (`unsupported_content_encoding`: `Content-Encoding` other than identity)",
    422: "invalid fields (listed in `errors`), or an `Idempotency-Key` reused with another body",
    429: "over the rate limit: retry after `Retry-After` seconds",
    503: "something it needs is unavailable, named by `code`: `rate_limiter_unavailable`"
    " (rate limits kept in Redis, which does not answer), `idempotency_store_busy`, or a"
    " route's own (`keystore_unavailable`, `ledger_busy`, …); retry later",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "The scheme."}},
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds until a request may succeed.",
        }
    },
}
_REQUEST_ID = {
    "X-Request-Id": {
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
        "description": "The request's id: the client's own `X-Request-Id` when well formed"
        " (1 to 128 of `A-Za-z0-9._-`), else a new one. Logged with the request.",
    }
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on a response replayed for a repeated `Idempotency-Key`.",
    }
}
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_LENGTH_MAX,
        "pattern": "^[\\x20-\\x7E]+$",
    },
    "description": "Makes the request safe to retry. The same key with the same request"
    " (method, path, query, body and its media type) within 24 hours replays the first"
    " response (status, body, `Content-Type`, `Location`, `Allow`, `WWW-Authenticate`,"
    " `Accept`) with `Idempotent-Replayed: true`; with another request it is 422"
    " `idempotency_key_reused`, while the first still runs 409"
    " `idempotency_request_in_progress`. Keys are per credential; 1 to"
    f" {IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters (else 400). A Structured"
    ' Field String (`"…"`, as draft-ietf-httpapi-idempotency-key-header writes the key)'
    " names the key it quotes.",
}
"""The header every credential's POST takes (`billfold.kit.http.idempotency`)."""
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_KEYED_METHODS = frozenset(method.lower() for method in KEYED_METHODS)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def exactly_one_of(*names: str) -> dict[str, Any]:
    """The document's form of a body validator that takes exactly one of `names` (the
    others absent or null), for a model's `json_schema_extra`: without it, a body the schema
    allowed (none of them, or two) was refused with 422."""
    return {
        "oneOf": [
            {
                "required": [name],
                "properties": {
                    other: {"not": {"type": "null"}} if other == name else {"type": "null"}
                    for other in names
                },
            }
            for name in names
        ]
    }


def _expected(method: str, operation: dict[str, Any], *, throttled: bool) -> Iterator[int]:
    """The error statuses the platform can answer for `operation`, whatever it declares."""
    parameters = operation.get("parameters", [])
    yield 400  # a query parameter the operation does not declare (`kit.http.query`)
    if operation.get("security"):
        yield from (401, 403, 429, 503)
    elif throttled:
        yield from (429, 503)
    if "requestBody" in operation:
        yield from (400, 413, 415, 422)
    elif method in _KEYED_METHODS:
        yield 413  # a body the route does not read is still bounded by the size limit
    if method in _KEYED_METHODS and operation.get("security"):
        # The Idempotency-Key of a credential's change: malformed, running or withheld, reused.
        yield from (400, 409, 422)
    if any(parameter.get("in") == "path" for parameter in parameters):
        yield from (400, 404)
    if parameters:
        yield 422
    if any(parameter.get("name") == "cursor" for parameter in parameters):
        yield 400


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json responses a route can return, for a route's
    (or router's) `responses=`. The schema is given under `application/problem+json` alone
    (FastAPI's `model` would also advertise an `application/json` body the API never
    sends); `document_errors` then points it at the shared `Problem` component."""
    return {
        status: {
            "description": f"{http.HTTPStatus(status).phrase} (problem+json)",
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


def document_errors(
    document: dict[str, Any], *, throttled: frozenset[tuple[str, str]] = frozenset()
) -> None:
    """Complete `document` in place (see the module). `throttled`: the (METHOD, path) of
    public routes limited per client address, which answer 429 too."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            limited = (method.upper(), path) in throttled
            for status in sorted(set(_expected(method, operation, throttled=limited))):
                responses.setdefault(str(status), {})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    _as_problem(int(code), response)
            _document_accepted_body(responses)
            _document_headers(method, operation)
    if not _mentions(document.get("paths", {}), _FASTAPI_VALIDATION_SCHEMAS):
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)


def _document_accepted_body(responses: dict[str, Any]) -> None:
    """A 202 declared without a body (`responses={202: {"description": …}}`) carries the
    route's own answer: the route sets the status on the response its model renders (a
    payment `in_review`, a rule still enforcing while its disabling awaits approval). It
    was documented as bodiless, so a client generated from the document dropped it."""
    accepted = responses.get("202")
    if accepted is None or "content" in accepted:
        return
    for code in ("200", "201"):
        content = responses.get(code, {}).get("content")
        if content:
            accepted["content"] = copy.deepcopy(content)
            return


def _document_headers(method: str, operation: dict[str, Any]) -> None:
    """The headers the platform's middleware reads and writes around `operation`."""
    idempotent = method in _KEYED_METHODS and bool(operation.get("security"))
    if idempotent:
        parameters = operation.setdefault("parameters", [])
        if not any(parameter.get("name") == "Idempotency-Key" for parameter in parameters):
            parameters.append(IDEMPOTENCY_KEY_PARAMETER)
    for response in operation.get("responses", {}).values():
        headers = response.setdefault("headers", {})
        headers.update(_REQUEST_ID)
        if idempotent:
            headers.update(_REPLAYED)


def _as_problem(status: int, response: dict[str, Any]) -> None:
    phrase = http.HTTPStatus(status).phrase
    why = _WHY.get(status)
    if not response.get("description") or response["description"] == "Validation Error":
        response["description"] = f"{phrase} (problem+json)" + (f": {why}" if why else "")
    response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
    if status in _HEADERS:
        response.setdefault("headers", {}).update(_HEADERS[status])


def _mentions(value: object, names: tuple[str, ...]) -> bool:
    if isinstance(value, dict):
        reference = value.get("$ref")
        if isinstance(reference, str) and reference.rsplit("/", 1)[-1] in names:
            return True
        return any(_mentions(item, names) for item in value.values())
    if isinstance(value, list):
        return any(_mentions(item, names) for item in value)
    return False


def _throttled_routes(app: FastAPI) -> frozenset[tuple[str, str]]:
    """(METHOD, path) of the routes that depend on `throttle_sign_in`."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for part in list(contexts()) if contexts is not None else [route]:
            dependant = getattr(part, "dependant", None)
            path = getattr(part, "path_format", None)
            if dependant is None or not isinstance(path, str):
                continue
            if any(call is throttle_sign_in for call in _calls(dependant)):
                found.update((method, path) for method in getattr(part, "methods", ()) or ())
    return frozenset(found)


def _calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for dependency in getattr(dependant, "dependencies", ()):
        call = getattr(dependency, "call", None)
        if call is not None:
            yield call
        yield from _calls(dependency)


def _exact_definitions(app: FastAPI) -> dict[str, Any]:
    """The component schemas as pydantic generates them, before FastAPI's `OpenAPI` model
    turns their bounds into floats (the same steps as `fastapi.openapi.utils.get_openapi`)."""
    from fastapi._compat import get_definitions, get_flat_models_from_fields, get_model_name_map
    from fastapi.openapi.utils import get_fields_from_routes

    fields = get_fields_from_routes([*app.routes, *app.webhooks.routes])
    models = get_model_name_map(get_flat_models_from_fields(fields, known_models=set()))
    _, definitions = get_definitions(
        fields=fields,
        model_name_map=models,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    return definitions


def _restore_integer_bounds(generated: object, exact: object) -> None:
    """Put the integer bounds of `exact` back where `generated`, the same schema after
    FastAPI's float conversion, holds them as floats."""
    if isinstance(generated, dict) and isinstance(exact, dict):
        for key, value in generated.items():
            original = exact.get(key)
            if (
                key in _BOUNDS
                and isinstance(value, float)
                and isinstance(original, int)
                and not isinstance(original, bool)
                and float(original) == value
            ):
                generated[key] = original
            else:
                _restore_integer_bounds(value, original)
    elif isinstance(generated, list) and isinstance(exact, list):
        for item, original in zip(generated, exact, strict=False):
            _restore_integer_bounds(item, original)


_PYDANTIC_BOUNDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
}
"""Pydantic writes a field's bounds under its own names when it cannot apply them to the
type itself (`Annotated[JsonInt, Field(ge=0)]`: the bounds of a type that already has a
validator): JSON Schema does not know them, so a client generated from the document
would see no bounds at all. They are renamed to the keywords JSON Schema defines."""


def _name_bounds_as_json_schema(schema: object) -> None:
    if isinstance(schema, dict):
        if schema.get("type") in ("integer", "number"):
            for ours, standard in _PYDANTIC_BOUNDS.items():
                if ours in schema and standard not in schema:
                    schema[standard] = schema.pop(ours)
        for value in schema.values():
            _name_bounds_as_json_schema(value)
    elif isinstance(schema, list):
        for item in schema:
            _name_bounds_as_json_schema(item)


_ID_EXAMPLE_HEX = "019a3f5e7c2b7d4e8f1a2b3c4d5e6f70"


def document_path_ids(document: dict[str, Any], prefixes: Mapping[str, str]) -> None:
    """Give every path parameter named in `prefixes` (name to id prefix, `account_id` to
    `acc`) the exact form its route parses (`kit.ids.parse_id`): the prefix, `_`, and 32
    lowercase hex digits. The schema stays a string: the route still answers anything
    else itself, 400 `invalid_id` naming the form, where a pattern enforced by FastAPI
    would have made it a 422 of another shape."""
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            for parameter in operation.get("parameters", []):
                prefix = prefixes.get(parameter.get("name", ""))
                if parameter.get("in") != "path" or prefix is None:
                    continue
                schema = parameter.setdefault("schema", {})
                schema["pattern"] = f"^{prefix}_[0-9a-f]{{32}}$"
                schema["examples"] = [f"{prefix}_{_ID_EXAMPLE_HEX}"]
                parameter.setdefault(
                    "description",
                    f"A `{prefix}_…` id: `{prefix}_` then 32 lowercase hex digits; anything"
                    " else is 400 `invalid_id`.",
                )


def install_error_documentation(app: FastAPI, *, path_ids: Mapping[str, str] | None = None) -> None:
    """Make `app.openapi()` return its generated document completed by `document_errors`
    and, with `path_ids`, by `document_path_ids`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = app.openapi_schema
        if document is None:
            document = generate()
            schemas = document.get("components", {}).get("schemas", {})
            _restore_integer_bounds(schemas, _exact_definitions(app))
            _name_bounds_as_json_schema(schemas)
            document_errors(document, throttled=_throttled_routes(app))
            document_path_ids(document, path_ids or {})
            app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

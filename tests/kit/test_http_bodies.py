"""JSON request bodies are I-JSON (RFC 7493): UTF-8, no repeated member names, numbers that
can be read; and on a route that requires a credential, the credential is checked before
the body (`billfold.kit.http.bodies`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.auth import (
    CredentialRateLimit,
    Mode,
    Principal,
    install_auth,
    install_rate_limit,
    require_scopes,
)
from billfold.kit.errors import PROBLEM_JSON, BearerTokenRejected, install_problem_handlers
from billfold.kit.http.bodies import StrictJsonMiddleware, json_body_problem
from billfold.kit.http.rate_limit import InProcessRateLimiter
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


def _problem_type(response: Any) -> str:
    return str(response.json()["errors"][0]["type"])


@pytest.mark.parametrize(
    "number",
    ["9" * 5_000, "-" + "9" * 5_000, "1" + "0" * 10_000],
    ids=["5000-digits", "negative", "10001-digits"],
)
def test_an_integer_too_long_to_read_is_out_of_range(client: TestClient, number: str) -> None:
    """Well-formed JSON, one value of which Python's `int()` refuses (more than 4,300
    digits): 422 about the value, not 400 `body_unreadable` about the body."""
    body = f'{{"a": [1, {{"n": {number}}}], "b": "x"}}'.encode()
    response = _post(client, body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"] == [
        {
            "loc": ["body"],
            "message": "An integer has more than 4300 digits.",
            "type": "json_number_out_of_range",
        }
    ]
    direct = json_body_problem(body)
    assert direct is not None and direct.code == "validation_failed"


@pytest.mark.parametrize(
    "number", ["1e999999", "-1E+999999", "1" + "0" * 400 + ".5", "1.5e309"], ids=ascii
)
def test_a_number_beyond_a_double_is_out_of_range(client: TestClient, number: str) -> None:
    """Python reads these as infinity, which no field should take for a number."""
    response = _post(client, f'{{"x": {{"y": [{number}]}}}}'.encode())
    assert response.status_code == 422, response.text
    assert _problem_type(response) == "json_number_out_of_range"
    assert "IEEE 754" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client: TestClient, constant: str) -> None:
    response = _post(client, f'{{"x": {constant}}}'.encode())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert _problem_type(response) == "json_invalid"


def test_long_fractions_small_exponents_and_long_integers_within_the_limit_are_read(
    client: TestClient,
) -> None:
    """A fraction of 5,000 digits is the nearest double, `1e-999999` is zero, and an
    integer of 4,300 digits (the most `int()` converts) is an integer: the route judges
    them."""
    longest = int("7" * 4_300)
    body = f'{{"f": 0.{"1" * 5_000}, "e": 1e-999999, "n": {longest}, "x": 2.5e3}}'.encode()
    response = _post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"f": 0.1111111111111111, "e": 0.0, "n": longest, "x": 2500.0}


def test_json_nested_past_the_parsers_limit_is_still_unreadable(client: TestClient) -> None:
    response = _post(client, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert response.json()["code"] == "body_unreadable"


# The credential comes first: on a route that requires one, a caller without a valid
# credential learns nothing about its body.

GUARDED_LIMIT = 20


class ThingIn(BaseModel):
    size: int


class _Rejected(BearerTokenRejected):
    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self, realm: str) -> None:
        super().__init__("A valid credential is required.")
        self._realm = realm

    def response_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="{self._realm}"'}


@dataclass
class Guarded:
    app: FastAPI
    authentications: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


_user_bearer = HTTPBearer(auto_error=False, scheme_name="TestUserToken")


async def signed_in_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)],
) -> str:
    """An end user's sign-in, as identity's is: its own scheme, not `require_scopes`."""
    request.app.state.guarded.authentications.append(request.url.path)
    if request.headers.get("authorization") != "Bearer user":
        raise _Rejected("test-users")
    return "u1"


def _guarded() -> Guarded:
    app = FastAPI()
    guarded = app.state.guarded = Guarded(app)
    principal = Principal(
        tenant_id=uuid.uuid4(),
        api_key_id=uuid.uuid4(),
        mode=Mode.TEST,
        scopes=frozenset({"ledger:write"}),
    )

    async def authenticate(request: Request) -> Principal:
        guarded.authentications.append(request.url.path)
        if request.headers.get("authorization") == "Bearer boom":
            raise RuntimeError("the credential store is down")
        if request.headers.get("authorization") != "Bearer good":
            raise _Rejected("test")
        return principal

    install_problem_handlers(app)
    install_auth(app, authenticator=authenticate)
    install_rate_limit(
        app,
        CredentialRateLimit(limiter=InProcessRateLimiter(), limit=GUARDED_LIMIT, window_s=60),
    )

    @app.post("/things", dependencies=[Depends(require_scopes("ledger:write"))])
    async def create_thing(thing: ThingIn) -> dict[str, int]:
        guarded.runs.append("create")
        return {"size": thing.size}

    @app.post("/things/{thing_id}/archive", dependencies=[Depends(require_scopes("ledger:write"))])
    async def archive_thing(thing_id: str) -> dict[str, str]:
        guarded.runs.append(thing_id)
        return {"archived": thing_id}

    @app.post("/admin/things", dependencies=[Depends(require_scopes("tenant:admin"))])
    async def admin_thing(thing: ThingIn) -> dict[str, int]:
        guarded.runs.append("admin")
        return {"size": thing.size}

    @app.post("/mine")
    async def create_mine(thing: ThingIn, user: Annotated[str, Depends(signed_in_user)]) -> str:
        guarded.runs.append("mine")
        return user

    @app.post("/public")
    async def public(thing: ThingIn) -> dict[str, int]:
        guarded.runs.append("public")
        return {"size": thing.size}

    app.add_middleware(StrictJsonMiddleware, body_max_bytes=1 << 20)
    return guarded


# name: (body, status and error type once the credential is admitted)
BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed": (b'{"size": 1,', 422, "json_invalid"),
    "duplicate-name": (b'{"size": 1, "size": 2}', 422, "json_duplicate_name"),
    "forbidden-code-point": (b'{"size": 1, "s": "\\u0000"}', 422, "json_forbidden_code_point"),
    "utf-16": ('{"size": 1}'.encode("utf-16"), 400, "body_unreadable"),
    "long-integer": (b'{"size": ' + b"9" * 5_000 + b"}", 422, "json_number_out_of_range"),
    "huge-exponent": (b'{"size": 1e999999}', 422, "json_number_out_of_range"),
    "nan": (b'{"size": NaN}', 422, "json_invalid"),
    "nested-too-deep": (b"[" * 100_000 + b"]" * 100_000, 400, "body_unreadable"),
}


def _guarded_post(
    client: TestClient, path: str, body: bytes, authorization: str | None = None
) -> Any:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return client.post(path, content=body, headers=headers)


def _assert_unauthorized(response: Any, challenge: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == challenge
    problem = response.json()
    assert problem["code"] == "unauthorized"
    assert "errors" not in problem  # nothing about the body


def _problem_kind(response: Any) -> str:
    problem = response.json()
    return str(problem["errors"][0]["type"]) if "errors" in problem else str(problem["code"])


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="test"'),
        ("Bearer wrong", 'Bearer realm="test", error="invalid_token"'),
        ("Basic Zm9vOmJhcg==", 'Bearer realm="test"'),
    ],
    ids=["anonymous", "wrong-key", "other-scheme"],
)
def test_a_caller_without_a_valid_credential_gets_401_whatever_the_body(
    name: str, authorization: str | None, challenge: str
) -> None:
    guarded = _guarded()
    body = BAD_BODIES[name][0]
    with TestClient(guarded.app) as client:
        for path in ("/things", "/admin/things"):
            _assert_unauthorized(_guarded_post(client, path, body, authorization), challenge)
    assert guarded.runs == []


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_any_security_scheme_is_checked_before_the_body(name: str) -> None:
    """Not only API keys: any dependency that declares a security scheme (an end user's
    token, an operator's session) proves the caller before the body is looked at."""
    guarded = _guarded()
    with TestClient(guarded.app) as client:
        refused = _guarded_post(client, "/mine", BAD_BODIES[name][0], "Bearer good")
        admitted = _guarded_post(client, "/mine", BAD_BODIES[name][0], "Bearer user")
    _assert_unauthorized(refused, 'Bearer realm="test-users", error="invalid_token"')
    assert (admitted.status_code, _problem_kind(admitted)) == BAD_BODIES[name][1:]
    assert guarded.runs == []


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_valid_credential_gets_the_body_problem_counted_once(name: str) -> None:
    guarded = _guarded()
    body, status, kind = BAD_BODIES[name]
    with TestClient(guarded.app) as client:
        response = _guarded_post(client, "/things", body, "Bearer good")
    assert (response.status_code, _problem_kind(response)) == (status, kind), response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    # Authenticated once, and counted once: the problem says where the caller stands.
    assert guarded.authentications == ["/things"]
    assert int(response.headers["ratelimit-remaining"]) == GUARDED_LIMIT - 1
    assert guarded.runs == []


@pytest.mark.parametrize("name", ["malformed", "duplicate-name", "long-integer"])
def test_a_missing_scope_is_403_before_the_body(name: str) -> None:
    guarded = _guarded()
    with TestClient(guarded.app) as client:
        response = _guarded_post(client, "/admin/things", BAD_BODIES[name][0], "Bearer good")
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert guarded.runs == []


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_public_route_answers_the_body_as_before(name: str) -> None:
    guarded = _guarded()
    body, status, kind = BAD_BODIES[name]
    with TestClient(guarded.app) as client:
        response = _guarded_post(client, "/public", body)
    assert (response.status_code, _problem_kind(response)) == (status, kind)
    assert guarded.authentications == guarded.runs == []


def test_a_route_without_a_body_checks_the_credential_once() -> None:
    """A route that reads no body never looks at malformed JSON: it runs (its own checks
    once) as before; a body that is not I-JSON is refused there too, after the credential."""
    guarded = _guarded()
    path = "/things/t1/archive"
    with TestClient(guarded.app) as client:
        ran = _guarded_post(client, path, b'{"size": 1,', "Bearer good")
        anonymous = _guarded_post(client, path, b'{"a": 1, "a": 2}')
        refused = _guarded_post(client, path, b'{"a": 1, "a": 2}', "Bearer good")
    assert (ran.status_code, ran.json()) == (200, {"archived": "t1"})
    _assert_unauthorized(anonymous, 'Bearer realm="test"')
    assert (refused.status_code, _problem_kind(refused)) == (422, "json_duplicate_name")
    assert guarded.authentications == [path] * 3
    assert guarded.runs == ["t1"]
    assert int(refused.headers["ratelimit-remaining"]) == GUARDED_LIMIT - 2


def test_a_failing_credential_check_is_a_500_as_from_the_route() -> None:
    guarded = _guarded()
    with TestClient(guarded.app, raise_server_exceptions=False) as client:
        response = _guarded_post(client, "/things", b'{"size": 1,', "Bearer boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


def test_an_unknown_path_answers_as_before() -> None:
    guarded = _guarded()
    with TestClient(guarded.app) as client:
        malformed = _guarded_post(client, "/nowhere", b'{"size": 1,')
        repeated = _guarded_post(client, "/nowhere", b'{"a": 1, "a": 2}')
    assert malformed.status_code == 404
    assert (repeated.status_code, _problem_kind(repeated)) == (422, "json_duplicate_name")


def test_a_body_over_the_limit_is_413_before_the_credential() -> None:
    """The size limit is enforced while the body is read, before any route (or credential
    check) runs: the server holds no more than the limit for anyone."""
    app = _guarded().app
    app.user_middleware.clear()
    app.add_middleware(StrictJsonMiddleware, body_max_bytes=1_000)
    with TestClient(app) as client:
        response = _guarded_post(client, "/things", b'{"size": ' + b"1" * 2_000 + b"}")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"

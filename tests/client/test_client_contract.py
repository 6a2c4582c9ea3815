"""Every SDK method against the server's contract (its OpenAPI document): each request it
sends is an operation the document declares (method and path), names only query
parameters that operation declares (the server answers any other 400
`unknown_query_parameter`), whether the optional filters are given or left None, and
carries an `Idempotency-Key` where the server reads one (the caller's when given)."""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import billfold.client.types
from billfold.app import create_app
from billfold.client import AsyncBillfold, Billfold, BillfoldOperator, BillfoldUser, DeviceSigner
from billfold.client.resources._base import Resource
from billfold.kit.settings import Settings
from client.sdk_support import collect_unclosed_connections
from client.test_client_units import _SHAPES

_KEYED = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FAR = "2999-01-01T00:00:00+00:00"
# One answer that every method can read what it needs from (a page, a token pair, a
# session, a sign-in): the test is about what the SDK sends, not about what it returns.
_ANSWER: dict[str, Any] = {
    "items": [],
    "next_cursor": None,
    "id": "dev_" + "1" * 32,
    "status": "authenticated",
    "mfa": None,
    "token": "bfo_x",
    "session_id": "ses_x",
    "token_type": "Bearer",
    "access_token": "bfu_x",
    "access_token_expires_at": _FAR,
    "refresh_token": "bfr_x",
    "refresh_token_expires_at": _FAR,
    "tokens": {
        "session_id": "ses_x",
        "token_type": "Bearer",
        "access_token": "bfu_x",
        "access_token_expires_at": _FAR,
        "refresh_token": "bfr_x",
        "refresh_token_expires_at": _FAR,
    },
    "challenge": "c",
    "amount": "1",
    "currency": "USD",
    "payee": "acc_x",
}
_REFUSED_BEFORE_SENDING = {
    "BillfoldUser.complete_mfa (all)",  # exactly one answer: given all three
    "BillfoldUser.complete_mfa (required)",  # and none
    "BillfoldUser.me.step_up.answer (all)",  # exactly one answer
    "BillfoldUser.me.step_up.answer (required)",
    "Billfold.fx.create_quote (all)",  # exactly one of the amounts
    "Billfold.fx.create_quote (required)",
    "Billfold.pii.put (required)",  # at least one field
    "Billfold.users.create (required)",  # at least one identifier
}
# The end user's calls that move money: a caller who retries one across processes (a
# crash between sending and storing the answer) must be able to send the same key again.
_MONEY_MOVEMENTS = frozenset(
    {
        "BillfoldUser.payments.top_up",
        "BillfoldUser.payments.withdraw",
        "BillfoldUser.payments.send",
        "BillfoldUser.payments.authorize",
        "BillfoldUser.payments.request_money",
        "BillfoldUser.payments.approve_money_request",
        "BillfoldUser.payments.decline_money_request",
    }
)
_SKIPPED = frozenset({"request", "close"})
_SIGNER = DeviceSigner(ed25519.Ed25519PrivateKey.generate(), device_id="dev_" + "1" * 32)
_BY_NAME: dict[str, Any] = {
    "signer": _SIGNER,
    "idempotency_key": "sdk-contract-key",
    "pages_max": 2,
    "headers": {"Content-Type": "application/json"},
}


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/stream"):
            return httpx.Response(200, text="", headers={"Content-Type": "text/event-stream"})
        return httpx.Response(200, json=_ANSWER)

    async def answer_async(self, request: httpx.Request) -> httpx.Response:
        return self.answer(request)


def _value(name: str, hint: Any) -> Any:
    """A plausible argument for a parameter: by name, else by its type."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _value(name, next(argument for argument in arguments if argument is not None))
    if origin is typing.Literal:
        return arguments[0]
    if origin in (list, collections.abc.Sequence, tuple):
        return [_value(name, arguments[0])] if arguments else []
    if origin in (dict, collections.abc.Mapping) or typing.is_typeddict(hint):
        return {}
    if origin is collections.abc.Callable:
        return lambda: "123456"
    if hint is bool:
        return True
    if hint is int:
        return 1
    if hint is float:
        return 1.0
    if hint is bytes:
        return b"{}"
    return f"{name}_1"


def _calls(method: Callable[..., Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Two calls: every parameter given, and only the required ones (optional filters
    left None)."""
    hints = typing.get_type_hints(method)
    everything: dict[str, Any] = {}
    required: dict[str, Any] = {}
    for name, parameter in inspect.signature(method).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = _value(name, hints.get(name, str))
        everything[name] = value
        if parameter.default is parameter.empty:
            required[name] = value
    yield "all", everything
    yield "required", required


def _methods(owner: object, prefix: str) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every public method of `owner` and of the resources it holds, recursively."""
    for name in sorted(dir(owner)):
        if name.startswith("_") or name in _SKIPPED:
            continue
        attribute = getattr(owner, name)
        if isinstance(attribute, Resource) or type(attribute).__module__.startswith(
            "billfold.client.resources"
        ):
            yield from _methods(attribute, f"{prefix}.{name}")
        elif inspect.ismethod(attribute):
            yield f"{prefix}.{name}", attribute


def _consume(result: Any) -> None:
    if isinstance(result, Iterator):
        list(result)


async def _consume_async(result: Any) -> None:
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, collections.abc.AsyncIterator):
        async for _ in result:
            pass


class _Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, operations in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]*\}", "[^/]+", template) + "$")
            for method, operation in operations.items():
                self.operations.append((pattern, method.upper(), operation))

    def operation(self, request: httpx.Request) -> dict[str, Any] | None:
        for pattern, method, operation in self.operations:
            if method == request.method and pattern.match(
                request.url.raw_path.split(b"?")[0].decode()
            ):
                return operation
        return None


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> _Contract:
    collect_unclosed_connections()
    database = Path(tmp_path_factory.mktemp("contract")) / "unused.db"
    return _Contract(create_app(Settings(database_url=f"sqlite:///{database}")).openapi())


def _check(
    name: str,
    variant: str,
    arguments: dict[str, Any],
    sent: list[httpx.Request],
    contract: _Contract,
) -> list[str]:
    problems: list[str] = []
    for request in sent:
        operation = contract.operation(request)
        where = f"{name} ({variant}): {request.method} {request.url.path}"
        if operation is None:
            problems.append(f"{where}: no such operation")
            continue
        parameters = operation.get("parameters", [])
        declared = {p["name"] for p in parameters if p["in"] == "query"}
        undeclared = set(request.url.params) - declared
        if undeclared:
            problems.append(f"{where}: undeclared query parameters {sorted(undeclared)}")
        reads_key = any(
            p["in"] == "header" and p["name"].lower() == "idempotency-key" for p in parameters
        )
        if reads_key and "Idempotency-Key" not in request.headers:
            problems.append(f"{where}: no Idempotency-Key")
        takes_no_key = "idempotency_key" not in arguments and variant == "all"
        if reads_key and request.method in _KEYED - {"POST"} and takes_no_key:
            problems.append(f"{where}: takes no idempotency_key=")
        if reads_key and name in _MONEY_MOVEMENTS and takes_no_key:
            problems.append(f"{where}: moves money but takes no idempotency_key=")
        given = arguments.get("idempotency_key")
        if given is not None and reads_key and request.headers.get("Idempotency-Key") != given:
            problems.append(f"{where}: sent another Idempotency-Key than the one given")
    return problems


def _sync_clients(transport: httpx.BaseTransport) -> dict[str, Any]:
    """Each client, signed in (the user's first call refreshes its token pair)."""
    user = BillfoldUser(
        tenant_id="ten_x",
        mode="test",
        base_url="http://h",
        refresh_token="bfr_x",
        http_transport=transport,
    )
    user.mfa_token = "mfa_x"  # a second step pending, for the MFA calls to send
    return {
        "Billfold": Billfold(api_key="bf_test_x", base_url="http://h", http_transport=transport),
        "BillfoldUser": user,
        "BillfoldOperator": BillfoldOperator(
            tenant_id="ten_x", base_url="http://h", token="bfo_x", http_transport=transport
        ),
    }


def _resolve(client: object, dotted: str) -> Callable[..., Any]:
    target: Any = client
    for part in dotted.split(".")[1:]:
        target = getattr(target, part)
    return typing.cast(Callable[..., Any], target)


def test_every_sync_method_sends_only_what_the_contract_declares(contract: _Contract) -> None:
    recorder = _Recorder()
    transport = httpx.MockTransport(recorder.answer)
    problems: list[str] = []
    silent: list[str] = []
    exercised = 0
    for client_name, template in _sync_clients(transport).items():
        for name, method in _methods(template, client_name):
            for variant, arguments in _calls(method):
                # A fresh client per call: one call (a log-out) must not change another's.
                client = _sync_clients(transport)[client_name]
                recorder.requests.clear()
                # Only the requests sent matter here, not what the method makes of the answer.
                with contextlib.suppress(Exception):
                    _consume(_resolve(client, name)(**arguments))
                client.close()
                if not recorder.requests:
                    silent.append(f"{name} ({variant})")
                    continue
                exercised += 1
                problems += _check(name, variant, arguments, list(recorder.requests), contract)
    assert exercised > 150
    assert not problems, "\n".join(problems)
    # Only the calls the SDK itself refuses before sending, as documented.
    assert set(silent) == _REFUSED_BEFORE_SENDING, "\n".join(silent)


@pytest.mark.anyio
async def test_every_async_method_sends_only_what_the_contract_declares(
    contract: _Contract,
) -> None:
    recorder = _Recorder()
    client = AsyncBillfold(
        api_key="bf_test_x",
        base_url="http://h",
        http_transport=httpx.MockTransport(recorder.answer_async),
    )
    problems: list[str] = []
    exercised = 0
    for name, method in _methods(client, "AsyncBillfold"):
        for variant, arguments in _calls(method):
            recorder.requests.clear()
            with contextlib.suppress(Exception):
                await _consume_async(method(**arguments))
            assert recorder.requests, f"{name} ({variant}) sent nothing"
            exercised += 1
            problems += _check(name, variant, arguments, list(recorder.requests), contract)
    await client.close()
    assert exercised >= 20
    assert not problems, "\n".join(problems)


def _enum(schema: dict[str, Any], schemas: dict[str, Any]) -> set[Any] | None:
    """The values a schema allows when it lists them (through `$ref`, `anyOf` and `const`)."""
    if "$ref" in schema:
        return _enum(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    if "enum" in schema:
        return set(schema["enum"])
    if "const" in schema:
        return {schema["const"]}
    values: set[Any] = set()
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
        values |= _enum(alternative, schemas) or set()
    return values or None


def _literals(hint: Any) -> set[Any] | None:
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        values: set[Any] = set()
        for argument in typing.get_args(hint):
            values |= _literals(argument) or set()
        return values or None
    return None


def test_the_typed_answers_name_every_value_the_server_may_send(contract: _Contract) -> None:
    """A `Literal` narrower than the server's enum (an FX quote's new `claimed` status)
    makes a type checker call a branch on the new value dead code."""
    schemas = contract.document["components"]["schemas"]
    mismatched = []
    for typed_name, schema_name in _SHAPES.items():
        hints = typing.get_type_hints(getattr(billfold.client.types, typed_name))
        for field, schema in schemas[schema_name]["properties"].items():
            literals = _literals(hints.get(field))
            allowed = _enum(schema, schemas)
            if literals is not None and allowed is not None and literals != allowed:
                mismatched.append(f"{typed_name}.{field}: {literals} != {allowed}")
    assert not mismatched, "\n".join(mismatched)

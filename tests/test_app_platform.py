"""The platform the app mounts, on SQLite and PostgreSQL: request ids on every response, body
limits (413), per-credential rate limits (429 with Retry-After), JSON logs naming the request
and tenant, authentication on every non-public route, the settings' bounds, and `serve`."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from billfold import app as app_module
from billfold import cli
from billfold import worker as worker_module
from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit import auth as kit_auth
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE, Mode, Principal
from billfold.kit.http import idempotency_store, limits, rate_limit
from billfold.kit.http.logging import configure_logging
from billfold.kit.http.rate_limit_redis import RedisRateLimiter
from billfold.kit.settings import Settings, get_settings
from billfold.ledger.schemas import TransferCreateRequest
from billfold.ledger.types import BATCH_SIZE_MAX
from ledger.ledger_api_support import (
    API_SETTINGS,
    Keys,
    api,
    assert_problem,
    auth,
    balances,
    make_keys,
    open_account,
    transfer,
)

PUBLIC_PATHS = {"/healthz", "/readyz"}
REDIS_URL = os.environ.get("BILLFOLD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def keys(database_url: str) -> Keys:
    return make_keys(database_url)


# ----------------------------------------------------------------------------- request ids


def test_every_response_carries_a_request_id(database_url: str, keys: Keys) -> None:
    with api(database_url, request_body_max_bytes=2048) as client:
        responses = {
            "200": client.get("/healthz"),
            "201": client.post(
                "/v1/accounts", json={"ledger": "USD", "code": 1}, headers=auth(keys.writer)
            ),
            "401": client.get("/v1/accounts"),
            "403": client.get("/v1/accounts", headers=auth(keys.admin)),
            "404": client.get("/v1/nothing"),
            "405": client.delete("/v1/accounts", headers=auth(keys.reader)),
            "413": client.post("/v1/accounts", content=b"x" * 4096, headers=auth(keys.writer)),
            "422": client.post("/v1/accounts", json={}, headers=auth(keys.writer)),
        }
        echoed = client.get("/healthz", headers={"X-Request-Id": "trace-42.a_b"})
        replaced = client.get("/healthz", headers={"X-Request-Id": "bad id;<x>"})
    ids = set()
    for status, response in responses.items():
        assert str(response.status_code) == status
        ids.add(response.headers["x-request-id"])
    assert len(ids) == len(responses), "each response its own id"
    assert echoed.headers["x-request-id"] == "trace-42.a_b"
    assert replaced.headers["x-request-id"] != "bad id;<x>"


# ----------------------------------------------------------------------------- body limits


def test_bodies_over_the_limit_are_413_and_change_nothing(database_url: str, keys: Keys) -> None:
    with api(database_url, request_body_max_bytes=1024) as client:
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        body = transfer(debit, credit, "10")
        padded = json.dumps(body).encode() + b" " * 2048
        headers = auth(keys.writer, **{"Content-Type": "application/json"})
        declared = client.post("/v1/transfers", content=padded, headers=headers)
        keyed = client.post(
            "/v1/transfers", content=padded, headers={**headers, "Idempotency-Key": "big"}
        )

        def chunks() -> Any:
            yield json.dumps(body).encode()
            yield b" " * 2048

        streamed = client.post("/v1/transfers", content=chunks(), headers=headers)
        batch = client.post(
            "/v1/transfers/batch", content=b'{"transfers": [' + padded + b"]}", headers=headers
        )
        after = balances(client, keys.reader, credit)
    for response in (declared, keyed, streamed):
        problem = assert_problem(response, 413, "payload_too_large")
        assert problem["body_max_bytes"] == 1024
    # The batch route has its own, larger limit: the same body fits there.
    assert batch.status_code == 200
    assert batch.json()["results"][0]["result"] == "ok"
    assert after["credits_posted"] == "10"


def test_the_default_batch_limit_takes_the_largest_batch_the_ledger_accepts() -> None:
    """The documented promise: 8,190 transfers the ledger can accept fit, each at its
    longest (a 39-digit amount, 12-character ledger, eight flag names, 128 characters of
    user data outside the BMP, which JSON encoders escape to 12 bytes each), pretty-printed.
    At 16 MiB such a batch was 413."""
    longest = {
        "id": "txf_" + "a" * 32,
        "debit_account_id": "acc_" + "b" * 32,
        "credit_account_id": "acc_" + "c" * 32,
        "amount": str(2**127 - 1),
        "ledger": "A" * 12,
        "code": 65_535,
        "flags": ["balancing_credit"] * 8,
        "pending_id": "txf_" + "d" * 32,
        "timeout_s": 2**63 - 1,
        "user_data": "\U0001f600" * 128,
    }
    TransferCreateRequest.model_validate(longest)
    body = json.dumps({"transfers": [longest] * BATCH_SIZE_MAX}, indent=2).encode()
    assert len(body) > 16 * 1024 * 1024
    assert len(body) <= Settings().request_body_batch_max_bytes


def test_the_batch_limit_may_not_be_below_the_default_limit() -> None:
    with pytest.raises(ValidationError):
        Settings(request_body_max_bytes=4096, request_body_batch_max_bytes=2048)


# ----------------------------------------------------------------------------- rate limits


def test_a_credential_over_its_rate_limit_gets_429_with_retry_after(
    database_url: str, keys: Keys
) -> None:
    limited = {"rate_limit_credential_requests": 3, "rate_limit_window_s": 60}
    other = make_keys(database_url, "Other")
    with api(database_url, **limited) as client:
        allowed = [client.get("/v1/accounts", headers=auth(keys.reader)) for _ in range(3)]
        refused = client.get("/v1/accounts", headers=auth(keys.reader))
        refused_post = client.post(
            "/v1/accounts",
            json={"ledger": "USD", "code": 1},
            headers=auth(keys.reader, **{"Idempotency-Key": "limited"}),
        )
        other_key = client.get("/v1/accounts", headers=auth(keys.writer))
        other_tenant = client.get("/v1/accounts", headers=auth(other.reader))
    assert [response.status_code for response in allowed] == [200, 200, 200]
    assert allowed[0].headers["ratelimit-limit"] == "3"
    assert [r.headers["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    # The draft's current fields: the policy is named by what it counts, never by the key.
    assert [r.headers["ratelimit-policy"] for r in allowed] == ['"credential";q=3;w=60'] * 3
    assert [r.headers["ratelimit"].split(";t=")[0] for r in allowed] == [
        f'"credential";r={left}' for left in (2, 1, 0)
    ]
    for response in (refused, refused_post):
        assert_problem(response, 429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["ratelimit"].startswith('"credential";r=0;t=')
    assert other_key.status_code == other_tenant.status_code == 200, "per credential"


def test_a_rate_limited_request_keeps_no_idempotency_key(database_url: str, keys: Keys) -> None:
    limited = {"rate_limit_credential_requests": 1, "rate_limit_window_s": 1}
    body = {"ledger": "USD", "code": 1}
    headers = auth(keys.writer, **{"Idempotency-Key": "after-429"})
    with api(database_url, **limited) as client:
        assert client.get("/v1/accounts", headers=auth(keys.writer)).status_code == 200
        refused = client.post("/v1/accounts", json=body, headers=headers)
        time.sleep(1.1)
        retried = client.post("/v1/accounts", json=body, headers=headers)
    assert_problem(refused, 429, "rate_limited")
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers, "the 429 was not kept"


def _redis_reachable() -> bool:
    from redis import Redis

    try:
        return bool(Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping())
    except Exception:
        return False


def test_with_a_redis_url_the_limit_is_counted_in_redis(database_url: str, keys: Keys) -> None:
    if not _redis_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true and is unreachable at {REDIS_URL}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")
    limited = {"rate_limit_credential_requests": 2, "rate_limit_window_s": 60}
    with api(database_url, redis_url=REDIS_URL, **limited) as client:
        limiter = client.app.state.credential_rate_limit.limiter  # type: ignore[attr-defined]
        statuses = [
            client.get("/v1/accounts", headers=auth(keys.reader)).status_code for _ in range(3)
        ]
    assert isinstance(limiter, RedisRateLimiter)
    assert statuses == [200, 200, 429]


def test_an_unreachable_redis_is_a_503_not_a_crash(database_url: str, keys: Keys) -> None:
    with api(database_url, redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.5) as client:
        response = client.get("/v1/accounts", headers=auth(keys.reader))
    assert_problem(response, 503, "rate_limiter_unavailable")


# ----------------------------------------------------------------------------- logs


def test_json_log_lines_name_the_request_and_the_tenant(database_url: str, keys: Keys) -> None:
    stream = io.StringIO()
    with api(database_url) as client:
        configure_logging("info", stream=stream)  # after create_app, which configured stderr
        response = client.get("/v1/accounts", headers=auth(keys.reader))
        anonymous = client.get("/v1/accounts")
    configure_logging("info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line.get("logger") == "billfold.access"]
    mine = next(line for line in access if line["request_id"] == response.headers["x-request-id"])
    assert mine["tenant"] == f"ten_{keys.tenant_id.hex}"
    assert mine["actor"].startswith("key_")
    assert (mine["method"], mine["path"], mine["status"]) == ("GET", "/v1/accounts", 200)
    theirs = next(
        line for line in access if line["request_id"] == anonymous.headers["x-request-id"]
    )
    assert theirs["status"] == 401 and "tenant" not in theirs


# ----------------------------------------------------------------------------- routes


def test_every_ledger_route_refuses_an_anonymous_caller(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/routes.db"))) as client:
        paths = client.get("/openapi.json").json()["paths"]
        operations = [(method, path) for path, item in paths.items() for method in item]
        ledger = [(m, p) for m, p in operations if p.startswith(("/v1/accounts", "/v1/transfers"))]
        assert len(ledger) == 9
        for method, path in ledger:
            assert paths[path][method]["security"] == [{"ApiKey": []}], (method, path)
            concrete = path.replace("{account_id}", "acc_" + "0" * 32)
            concrete = concrete.replace("{transfer_id}", "txf_" + "0" * 32)
            response = client.request(method, concrete, json={})
            assert response.status_code == 401, (method, path, response.text)
        for path in PUBLIC_PATHS:
            assert client.get(path).status_code == 200


def test_every_scope_a_route_requires_can_be_granted(tmp_path: Path) -> None:
    create_app(Settings(database_url=f"sqlite:///{tmp_path}/scopes.db"))
    declared = kit_auth.declared_scopes()
    assert {"ledger:read", "ledger:write", "tenant:admin"} <= declared
    assert declared <= {scope.value for scope in Scope}


def test_the_ledger_tenant_is_one_per_tenant_and_mode() -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()

    def principal(tenant_id: uuid.UUID, mode: Mode) -> Principal:
        return Principal(
            tenant_id=tenant_id, api_key_id=uuid.uuid4(), mode=mode, scopes=frozenset()
        )

    test, live = principal(tenant, Mode.TEST), principal(tenant, Mode.LIVE)
    assert test.ledger_tenant_id == principal(tenant, Mode.TEST).ledger_tenant_id, "any key"
    assert test.ledger_tenant_id != live.ledger_tenant_id
    assert test.ledger_tenant_id != principal(other, Mode.TEST).ledger_tenant_id
    assert test.ledger_tenant_id == uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant}:test")


def test_concurrent_requests_with_one_key_share_one_authentication(
    database_url: str, keys: Keys
) -> None:
    calls = 0
    application = create_app(Settings(database_url=database_url, **API_SETTINGS))
    authenticate = application.state.authenticator

    async def counting(request: Any) -> Principal:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # long enough for the others to arrive
        principal: Principal = await authenticate(request)
        return principal

    kit_auth.install_auth(application, authenticator=counting)

    async def burst() -> list[int]:
        import httpx

        transport = httpx.ASGITransport(app=application)
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            responses = await asyncio.gather(
                *(client.get("/v1/accounts", headers=auth(keys.reader)) for _ in range(10))
            )
            refused = await client.get("/v1/accounts", headers=auth(keys.reader + "x"))
        return [*(response.status_code for response in responses), refused.status_code]

    statuses = asyncio.run(burst())
    assert statuses == [200] * 10 + [401]
    assert calls == 2, "one for the burst, one for the other credential"


# ----------------------------------------------------------------------------- settings


def test_the_settings_bounds_match_the_kits_limits() -> None:
    fields = Settings.model_fields

    def bounds(name: str) -> tuple[object, object]:
        metadata = {type(item).__name__: item for item in fields[name].metadata}
        low = getattr(metadata.get("Ge"), "ge", None)
        high = getattr(metadata.get("Le"), "le", None)
        return low, high

    assert bounds("request_body_max_bytes")[1] == limits.REQUEST_BODY_MAX_BYTES_LIMIT
    assert bounds("idempotency_ttl_s") == (
        idempotency_store.IDEMPOTENCY_TTL_S_MIN,
        idempotency_store.IDEMPOTENCY_TTL_S_MAX,
    )
    assert bounds("idempotency_lease_s")[1] == idempotency_store.IDEMPOTENCY_LEASE_S_MAX
    assert bounds("idempotency_response_max_bytes")[1] == (
        idempotency_store.RESPONSE_BODY_MAX_BYTES_LIMIT
    )
    assert bounds("rate_limit_credential_requests")[1] == rate_limit.RATE_LIMIT_MAX
    assert bounds("rate_limit_window_s")[1] == rate_limit.RATE_LIMIT_WINDOW_S_MAX
    defaults = Settings()
    assert defaults.request_body_max_bytes == limits.REQUEST_BODY_MAX_BYTES_DEFAULT
    assert defaults.idempotency_ttl_s == 86_400
    assert defaults.redis_url is None


def test_the_redis_url_is_a_secret() -> None:
    settings = Settings(redis_url="redis://:hunter2@redis:6379/0")
    assert "hunter2" not in repr(settings)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value().endswith("@redis:6379/0")


def test_expired_idempotency_keys_are_purged_a_bounded_amount_per_round() -> None:
    class Store:
        def __init__(self) -> None:
            self.calls = 0

        async def purge_expired(self) -> int:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("database away")  # logged; the loop goes on
            return idempotency_store.PURGE_BATCH_MAX

    store = Store()

    async def run() -> None:
        task = asyncio.create_task(
            app_module._purge_forever(
                functools.partial(worker_module.purge_idempotency_keys, store),  # type: ignore[arg-type]
                interval_s=0.01,
                failure="idempotency.purge_failed",
            )
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert store.calls > worker_module.PURGE_ROUNDS_MAX, "rounds continue after a failure"


# ----------------------------------------------------------------------------- serve


def _serve(monkeypatch: pytest.MonkeyPatch, database_url: str, *arguments: str) -> Any:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs, args=args))
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["serve", *arguments])
    finally:
        get_settings.cache_clear()
    return result, seen


def test_serve_leaves_logging_to_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, seen = _serve(monkeypatch, f"sqlite:///{tmp_path}/serve.db", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert seen["log_config"] is None and seen["access_log"] is False
    assert (seen["port"], seen["workers"], seen["factory"]) == (8123, 1, True)
    assert seen["args"] == ("billfold.app:create_app",)


def test_serve_refuses_a_port_out_of_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As BILLFOLD_PORT does: uvicorn started on 70000 and said it listened there."""
    for port in ("0", "70000"):
        result, seen = _serve(monkeypatch, f"sqlite:///{tmp_path}/serve.db", "--port", port)
        assert result.exit_code == 2, result.output
        assert "--port" in result.output and seen == {}


def test_serve_runs_several_workers_only_on_postgresql(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused, _ = _serve(monkeypatch, f"sqlite:///{tmp_path}/serve.db", "--workers", "2")
    served, seen = _serve(monkeypatch, "postgresql://billfold@localhost/billfold", "--workers", "2")
    assert refused.exit_code == 2
    assert served.exit_code == 0 and seen["workers"] == 2

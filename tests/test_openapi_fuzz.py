"""Schemathesis against the application's own `/openapi.json`: for every operation, a bounded
number of generated requests — schema-conforming and deliberately malformed — sent with a
credential holding every scope. No request may produce a 5xx, and every error must be an
RFC 9457 problem+json document with the stable `code` member."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from billfold.app import create_app
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from identity.identity_support import bootstrap_tenant, create_key
from identity.operators.operators_support import operator
from identity.users.users_support import Tenancy, log_in, sign_up, tokens_of, users_config

EXAMPLES_PER_OPERATION = 4
ECB_SAMPLE = Path(__file__).parent / "fx" / "eurofxref-sample.xml"
"""Rates and a root key configured, as a deployment serving FX and PII has them (without,
those routes answer 503 by design: see the README's FX and keystore sections)."""
PROBLEM_MEMBERS = {"type", "title", "status", "code"}


def _check(response: Any, label: str) -> None:
    assert response.status_code < 500, (label, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", (label, response)
        problem = response.json()
        assert problem.keys() >= PROBLEM_MEMBERS, (label, problem)
        assert problem["status"] == response.status_code, (label, problem)


def _ends_sessions(operation: APIOperation) -> bool:
    """Signing out ends the credential the rest of the run uses: those operations go last."""
    return operation.path.endswith(("/logout", "/revoke-all", "/sessions/revoke"))


def _credential_for(path: str, tokens: dict[str, str]) -> str:
    """Each family of routes with the credential it is meant for, so the fuzzing reaches
    the handlers instead of stopping at authentication."""
    if path.startswith(("/v1/me", "/v1/sessions")):
        return tokens["user"]
    if path.startswith(("/v1/operators", "/v1/approvals", "/v1/risk")):
        return tokens["operator"]
    return tokens["api_key"]


def _fuzz(client: TestClient, operation: APIOperation, mode: GenerationMode, token: str) -> int:
    sent = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        headers = {str(k): str(v) for k, v in (kwargs.pop("headers", None) or {}).items()}
        headers["Authorization"] = f"Bearer {token}"
        kwargs.pop("cookies", None)
        if isinstance(kwargs.get("data"), str | bytes):  # a raw, possibly malformed body
            kwargs["content"] = kwargs.pop("data")
        response = client.request(headers=headers, **kwargs)
        sent += 1
        _check(response, f"{mode.value} {operation.label}")

    try:
        run()
    except Unsatisfiable:  # nothing about this operation can be malformed (no inputs)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx_or_a_non_problem_error(
    database_url: str, mode: GenerationMode
) -> None:
    tenant = bootstrap_tenant(database_url, name="Fuzzed")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=list(Scope))
    administrator = operator(
        database_url, tenant_id=tenant.tenant.id, roles=[Role.ADMIN, Role.RISK_ANALYST]
    )
    app = create_app(
        Settings(
            database_url=database_url,
            rate_limit_credential_requests=10_000,
            ledger_batch_window_ms=0,
            fx_rates_file=str(ECB_SAMPLE),
            events_stream_duration_max_s=0.2,  # a live stream answers, then ends
            events_stream_poll_interval_s=0.05,
            master_key=base64.b64encode(os.urandom(32)).decode(),
        )
    )
    app.state.users_config = users_config()
    with TestClient(app) as client:
        sign_up(client, key, email="fuzz@example.com")
        tenancy = Tenancy(tenant=tenant, test_key=key, live_key=key)
        tokens = {
            "api_key": key.secret,
            "operator": administrator.token,
            "user": tokens_of(log_in(client, tenancy, identifier="fuzz@example.com"))[
                "access_token"
            ],
        }
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        operations = sorted(
            (result.ok() for result in schema.get_all_operations()), key=_ends_sessions
        )
        sent = sum(
            _fuzz(client, operation, mode, _credential_for(operation.path, tokens))
            for operation in operations
        )
    assert len(operations) > 40
    assert sent >= len(operations)

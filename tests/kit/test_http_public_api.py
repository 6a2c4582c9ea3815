"""The public names of `billfold.kit.http`, pinned: removing or renaming one is a decision."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC_API = {
    "bodies": {
        "StrictJsonMiddleware",
        "credential_refusal",
        "is_json_media_type",
        "json_body_problem",
        "read_body",
        "replaying_receive",
    },
    "caching": {"no_store"},
    "idempotency": {
        "IDEMPOTENCY_KEY_HEADER",
        "KEYED_METHODS",
        "REPLAYED_HEADER",
        "IdempotencyKeyInvalid",
        "IdempotencyKeyReused",
        "IdempotencyMiddleware",
        "IdempotencyRequestInProgress",
        "IdempotencyResponseWithheld",
        "FingerprintKeyProvider",
        "ScopeResolver",
        "StoreProvider",
        "parse_idempotency_key",
    },
    "idempotency_models": {
        "FINGERPRINT_LENGTH",
        "IDEMPOTENCY_KEY_LENGTH_MAX",
        "IDEMPOTENCY_SCOPE_LENGTH_MAX",
        "STATUS_COMPLETED",
        "STATUS_IN_PROGRESS",
        "IdempotencyKey",
    },
    "idempotency_repository": {"Claim", "Completion", "IdempotencyRepository"},
    "idempotency_sealing": {
        "SEALED_HEADER",
        "SEAL_OVERHEAD_BYTES",
        "response_key",
        "seal",
        "unseal",
    },
    "idempotency_batching": {
        "BATCH_SIZE_MAX_DEFAULT",
        "BATCH_SIZE_MAX_LIMIT",
        "QUEUE_SIZE_MAX_DEFAULT",
        "BatchingIdempotencyStore",
    },
    "idempotency_store": {
        "IDEMPOTENCY_LEASE_S_DEFAULT",
        "IDEMPOTENCY_LEASE_S_MAX",
        "IDEMPOTENCY_TTL_S_MAX",
        "IDEMPOTENCY_TTL_S_MIN",
        "PURGE_BATCH_MAX",
        "RESPONSE_BODY_MAX_BYTES_DEFAULT",
        "RESPONSE_BODY_MAX_BYTES_LIMIT",
        "BeginOutcome",
        "EarlierFingerprint",
        "IdempotencyStore",
        "IdempotencyStoreBusy",
        "InProgress",
        "Mismatch",
        "Replay",
        "Started",
        "StoredResponse",
        "media_type_of",
        "request_fingerprint",
    },
    "limits": {
        "REQUEST_BODY_MAX_BYTES_DEFAULT",
        "REQUEST_BODY_MAX_BYTES_LIMIT",
        "BodySizeLimitMiddleware",
        "InvalidContentLength",
    },
    "logging": {
        "ACCESS_LOGGER_NAME",
        "LOG_LEVELS",
        "AccessLogMiddleware",
        "bind_actor",
        "configure_logging",
    },
    "methods": {"MethodsMiddleware", "allowed_methods", "install_methods"},
    "openapi": {
        "IDEMPOTENCY_KEY_PARAMETER",
        "PROBLEM_SCHEMA",
        "document_errors",
        "document_path_ids",
        "exactly_one_of",
        "install_error_documentation",
        "problem_responses",
    },
    "problems": {"problem_response", "send_problem"},
    "query": {
        "UNKNOWN_LISTED_MAX",
        "DeclaredQuery",
        "RepeatedQueryParameter",
        "UnknownQueryParameter",
        "UnknownQueryParameterMiddleware",
        "declared_query_names",
        "repeated_query_names",
        "unknown_query_names",
    },
    "rate_limit": {
        "RATE_LIMIT_KEYS_MAX_DEFAULT",
        "RATE_LIMIT_KEY_LENGTH_MAX",
        "RATE_LIMIT_MAX",
        "RATE_LIMIT_WINDOW_S_MAX",
        "Decision",
        "InProcessRateLimiter",
        "KeyResolver",
        "LimiterProvider",
        "MonotonicClock",
        "RateLimitExceeded",
        "RateLimiter",
        "check_policy",
        "enforce_rate_limit",
        "rate_limit_dependency",
        "rate_limit_headers",
        "throttle_sign_in",
        "validate_rate_limit",
    },
    "rate_limit_redis": {
        "RATE_LIMIT_SCRIPT",
        "REDIS_TIMEOUT_S_DEFAULT",
        "RateLimiterUnavailable",
        "RedisRateLimiter",
        "RedisScripting",
    },
    "route_index": {"Inclusion", "RouteIndex", "inclusion", "install_route_index", "path_key"},
    "request_id": {
        "REQUEST_ID_HEADER",
        "REQUEST_ID_LENGTH_MAX",
        "RequestIdMiddleware",
        "choose_request_id",
        "current_request_id",
    },
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_each_module_exports_exactly_its_pinned_names(module_name: str) -> None:
    module = importlib.import_module(f"billfold.kit.http.{module_name}")
    assert set(module.__all__) == PUBLIC_API[module_name]
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize(
    ("module_name", "class_name", "status", "code"),
    [
        ("limits", "InvalidContentLength", 400, "invalid_content_length"),
        ("idempotency", "IdempotencyKeyInvalid", 400, "idempotency_key_invalid"),
        ("idempotency", "IdempotencyKeyReused", 422, "idempotency_key_reused"),
        ("idempotency", "IdempotencyRequestInProgress", 409, "idempotency_request_in_progress"),
        ("idempotency", "IdempotencyResponseWithheld", 409, "idempotency_response_withheld"),
        ("idempotency_store", "IdempotencyStoreBusy", 503, "idempotency_store_busy"),
        ("query", "UnknownQueryParameter", 400, "unknown_query_parameter"),
        ("query", "RepeatedQueryParameter", 400, "repeated_query_parameter"),
        ("rate_limit", "RateLimitExceeded", 429, "rate_limited"),
        ("rate_limit_redis", "RateLimiterUnavailable", 503, "rate_limiter_unavailable"),
    ],
)
def test_errors_keep_their_status_and_code(
    module_name: str, class_name: str, status: int, code: str
) -> None:
    error_class = getattr(importlib.import_module(f"billfold.kit.http.{module_name}"), class_name)
    assert (error_class.status, error_class.code) == (status, code)


def test_the_idempotency_table_imports_without_the_web_framework() -> None:
    # Migrations and workers load the table; they should not pay for FastAPI's import.
    probe = (
        "import sys, billfold.kit.http.idempotency_models; "
        "print(any(name.split('.')[0] in {'fastapi', 'starlette'} for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"

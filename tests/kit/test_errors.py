import pickle
import string
import subprocess
import sys
import warnings
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI, HTTPException
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.exceptions import StarletteDeprecationWarning

from billfold.kit import errors
from billfold.kit.errors import (
    PROBLEM_JSON,
    BadRequest,
    BillfoldError,
    Conflict,
    Forbidden,
    InvariantViolation,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    install_problem_handlers,
    invariant,
    problem_document,
)

with warnings.catch_warnings():
    # Starlette 1.x warns when its test client runs on httpx rather than httpx2; httpx is
    # what the lock file has. Remove this once httpx2 is a dev dependency.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


class Transfer(BaseModel):
    amount: int
    asset: str


class SecretLeakError(RuntimeError):
    pass


def build_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("No account acc_1.", account_id="acc_1")

    @app.get("/broken-invariant")
    async def broken_invariant() -> None:
        invariant(False, "balance of acc_secret went negative")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise ServiceUnavailable("The bank connector is down; retry later.")

    @app.post("/transfers")
    async def create_transfer(transfer: Transfer) -> dict[str, int]:
        return {"amount": transfer.amount}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418, detail="Short and stout.", headers={"X-Tea": "1"})

    @app.get("/crash")
    async def crash() -> None:
        raise SecretLeakError("password=hunter2 at db.internal:5432")

    return app


@pytest.fixture
def client() -> TestClient:
    # Exceptions reaching the outermost middleware are re-raised after the response is sent;
    # the test client must not turn that into a test failure.
    return TestClient(build_app(), raise_server_exceptions=False)


def assert_problem(response: Any, *, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://billfold.dev/problems/{code}"
    assert isinstance(body["title"], str)
    assert body["title"]
    return body


def test_public_api_is_pinned() -> None:
    assert set(errors.__all__) == {
        "ERRORS_LISTED_MAX",
        "PROBLEM_JSON",
        "PROBLEM_TYPE_BASE",
        "BadRequest",
        "BearerTokenRejected",
        "BillfoldError",
        "BodyUnreadable",
        "Conflict",
        "Forbidden",
        "InvariantViolation",
        "JSONValue",
        "NotFound",
        "PayloadTooLarge",
        "RateLimited",
        "ServiceUnavailable",
        "Unauthorized",
        "UnsupportedContentEncoding",
        "UnsupportedMediaType",
        "ValidationFailed",
        "install_problem_handlers",
        "invariant",
        "problem_document",
        "problem_instance",
    }


@pytest.mark.parametrize(
    ("error_class", "status", "code"),
    [
        (BillfoldError, 500, "internal_error"),
        (BadRequest, 400, "bad_request"),
        (Unauthorized, 401, "unauthorized"),
        (Forbidden, 403, "forbidden"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
        (PayloadTooLarge, 413, "payload_too_large"),
        (ValidationFailed, 422, "validation_failed"),
        (RateLimited, 429, "rate_limited"),
        (ServiceUnavailable, 503, "service_unavailable"),
        (InvariantViolation, 500, "invariant_violation"),
    ],
)
def test_each_error_class_has_its_status_and_code(
    error_class: type[BillfoldError], status: int, code: str
) -> None:
    assert error_class.status == status
    assert error_class.code == code
    assert error_class.title


def test_error_keeps_detail_and_extensions() -> None:
    error = Conflict("Already captured.", payment_id="pay_1", attempts=[1, 2])
    assert error.detail == "Already captured."
    assert dict(error.extensions) == {"payment_id": "pay_1", "attempts": [1, 2]}
    assert str(error) == "Already captured."


def test_error_without_detail_reads_as_its_title() -> None:
    error = NotFound()
    assert error.detail is None
    assert str(error) == "Not found"


def test_extensions_are_copied_so_later_mutation_does_not_change_the_error() -> None:
    ids = ["acc_1"]
    error = NotFound(ids=ids)
    ids.append("acc_2")
    assert error.extensions["ids"] == ["acc_1"]
    with pytest.raises(TypeError):
        error.extensions["ids"] = []  # type: ignore[index]


@pytest.mark.parametrize("name", ["type", "title", "status", "code", "instance", "x", "1abc"])
def test_extension_may_not_use_a_standard_member_or_bad_name(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be a problem extension member"):
        NotFound(**{name: "x"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), b"bytes", object(), {1: "a"}])
def test_extension_values_must_be_json(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        NotFound(value=value)


def test_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(Conflict("Twice.", transfer_id="txf_1")))  # noqa: S301
    assert isinstance(error, Conflict)
    assert error.detail == "Twice."
    assert dict(error.extensions) == {"transfer_id": "txf_1"}


def test_subclass_must_name_its_own_code() -> None:
    with pytest.raises(TypeError, match="must define its own 'code'"):

        class Forgetful(NotFound):
            title = "Forgetful"


def test_subclass_code_must_be_snake_case() -> None:
    with pytest.raises(TypeError, match="snake_case"):

        class Shouty(NotFound):
            code = "Shouty-Code"
            title = "Shouty"


def test_invariant_passes_when_condition_holds() -> None:
    invariant(True, "never raised")


def test_invariant_raises_when_condition_fails() -> None:
    with pytest.raises(InvariantViolation, match="books unbalanced"):
        invariant(False, "books unbalanced")


@pytest.mark.slow
def test_invariant_raises_under_python_optimize() -> None:
    program = (
        "from billfold.kit.errors import InvariantViolation, invariant\n"
        "assert False, 'asserts are stripped'\n"
        "try:\n"
        "    invariant(False, 'still checked')\n"
        "except InvariantViolation:\n"
        "    raise SystemExit(0)\n"
        "raise SystemExit(1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_problem_document_has_standard_members_in_rfc_9457_shape() -> None:
    document = problem_document(
        status=404,
        code="not_found",
        title="Not found",
        detail="No account acc_1.",
        instance="/accounts/acc_1",
        extensions={"account_id": "acc_1"},
    )
    assert document == {
        "type": "https://billfold.dev/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": "No account acc_1.",
        "instance": "/accounts/acc_1",
        "code": "not_found",
        "account_id": "acc_1",
    }


def test_problem_document_omits_absent_detail_and_instance() -> None:
    document = problem_document(
        status=409, code="conflict", title="Conflict", detail=None, instance=None
    )
    assert "detail" not in document
    assert "instance" not in document


def test_problem_document_without_code_is_about_blank() -> None:
    document = problem_document(
        status=400, code=None, title="Bad Request", detail=None, instance=None
    )
    assert document == {"type": "about:blank", "title": "Bad Request", "status": 400}


def test_problem_document_explicit_type_uri_wins() -> None:
    document = problem_document(
        status=400,
        code="bad_request",
        title="Bad request",
        detail=None,
        instance=None,
        type_uri="https://example.com/problems/x",
    )
    assert document["type"] == "https://example.com/problems/x"


def test_problem_document_extensions_cannot_overwrite_standard_members() -> None:
    document = problem_document(
        status=404,
        code="not_found",
        title="Not found",
        detail="real detail",
        instance="/real",
        extensions={
            "type": "evil",
            "title": "evil",
            "status": 200,
            "detail": "evil",
            "instance": "evil",
            "code": "evil",
            "kept": True,
        },
    )
    assert document == {
        "type": "https://billfold.dev/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": "real detail",
        "instance": "/real",
        "code": "not_found",
        "kept": True,
    }


def test_billfold_error_renders_as_problem_json(client: TestClient) -> None:
    body = assert_problem(client.get("/missing"), status=404, code="not_found")
    assert body["title"] == "Not found"
    assert body["detail"] == "No account acc_1."
    assert body["instance"] == "/missing"
    assert body["account_id"] == "acc_1"


def test_expected_5xx_billfold_error_keeps_its_detail(client: TestClient) -> None:
    body = assert_problem(client.get("/unavailable"), status=503, code="service_unavailable")
    assert body["detail"] == "The bank connector is down; retry later."


def test_invariant_violation_renders_500_without_its_message(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/broken-invariant")
    body = assert_problem(response, status=500, code="invariant_violation")
    assert "detail" not in body
    assert "acc_secret" not in response.text
    # Hidden from the client, but not from the operator.
    assert "acc_secret" in caplog.text


def test_request_validation_error_renders_422_with_json_safe_errors(client: TestClient) -> None:
    response = client.post("/transfers", json={"amount": "lots", "asset": ["USD"]})
    body = assert_problem(response, status=422, code="validation_failed")
    assert body["instance"] == "/transfers"
    assert body["detail"] == "The request has 2 invalid fields."
    errors_by_field = {tuple(error["loc"]): error for error in body["errors"]}
    assert set(errors_by_field) == {("body", "amount"), ("body", "asset")}
    for error in body["errors"]:
        assert set(error) == {"loc", "message", "type"}
        assert isinstance(error["message"], str)
    assert errors_by_field[("body", "amount")]["type"] == "int_parsing"
    assert "lots" not in str(body["errors"])


def test_malformed_json_body_renders_422(client: TestClient) -> None:
    response = client.post(
        "/transfers", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = assert_problem(response, status=422, code="validation_failed")
    assert body["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_a_body_sent_as_another_media_type_is_a_415(client: TestClient, content_type: str) -> None:
    """RFC 9110 section 15.5.16: content in a format the target does not support."""
    response = client.post(
        "/transfers",
        content=b'{"amount": 1, "asset": "USD"}',
        headers={"content-type": content_type},
    )
    body = assert_problem(response, status=415, code="unsupported_media_type")
    assert body["detail"] == "The request body must be JSON (Content-Type: application/json)."


def test_a_body_without_a_content_type_is_a_415(client: TestClient) -> None:
    """FastAPI reads only a JSON media type as JSON; without one the body is octets (RFC
    9110 section 8.3 lets a recipient assume application/octet-stream)."""
    response = client.post("/transfers", content=b'{"amount": 1, "asset": "USD"}')
    assert_problem(response, status=415, code="unsupported_media_type")


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_a_json_body_with_bad_fields_is_still_a_422(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/transfers", content=b'{"amount": "lots"}', headers={"content-type": content_type}
    )
    assert_problem(response, status=422, code="validation_failed")


def test_a_missing_body_is_a_422_whatever_its_content_type(client: TestClient) -> None:
    response = client.post("/transfers", headers={"content-type": "text/plain"})
    body = assert_problem(response, status=422, code="validation_failed")
    assert body["errors"][0]["type"] == "missing"


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount": "\xff\xfe"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"amount": ' + b"9" * 5000 + b"}",
    ],
    ids=["not-utf-8", "nested-too-deep", "integer-too-long"],
)
def test_a_body_that_cannot_be_read_as_json_text_is_a_400_with_its_own_code(
    client: TestClient, body: bytes
) -> None:
    response = client.post("/transfers", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, status=400, code="body_unreadable")
    assert problem["title"] == "Unreadable request body"


def test_validation_errors_listed_are_bounded() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/numbers")
    async def numbers(values: list[int]) -> int:
        return len(values)

    count = errors.ERRORS_LISTED_MAX + 10
    response = TestClient(app).post("/numbers", json=["x"] * count)
    body = assert_problem(response, status=422, code="validation_failed")
    assert len(body["errors"]) == errors.ERRORS_LISTED_MAX
    assert body["detail"] == f"The request has {count} invalid fields."


def test_unknown_route_renders_not_found(client: TestClient) -> None:
    body = assert_problem(client.get("/nowhere"), status=404, code="not_found")
    assert body["instance"] == "/nowhere"
    assert "detail" not in body


def test_the_instance_of_an_encoded_path_is_a_uri_reference(client: TestClient) -> None:
    """RFC 9457 section 3.1.5: `instance` is a URI reference, so a path that arrived
    percent-encoded is encoded again, not echoed decoded."""
    body = assert_problem(client.get("/nowhere/%C3%A9%20x%00"), status=404, code="not_found")
    assert body["instance"] == "/nowhere/%C3%A9%20x%00"


@given(st.text(max_size=40))
def test_problem_instance_is_ascii_and_decodes_to_the_path(text: str) -> None:
    path = "/" + text
    instance = errors.problem_instance(path)
    assert instance.isascii()
    assert not set(instance) - set(string.ascii_letters + string.digits + "%/:@!$&'()*+,;=-._~")
    assert unquote(instance, errors="strict") == path


def test_wrong_method_renders_method_not_allowed_with_allow_header(client: TestClient) -> None:
    response = client.delete("/missing")
    body = assert_problem(response, status=405, code="method_not_allowed")
    assert body["title"] == "Method Not Allowed"
    assert response.headers["allow"] == "GET"


def test_other_http_exception_renders_http_status_code_and_keeps_headers(
    client: TestClient,
) -> None:
    response = client.get("/teapot")
    body = assert_problem(response, status=418, code="http_418")
    assert body["detail"] == "Short and stout."
    assert response.headers["x-tea"] == "1"


def test_unexpected_exception_renders_500_without_leaking(client: TestClient) -> None:
    response = client.get("/crash")
    body = assert_problem(response, status=500, code="internal_error")
    assert body == {
        "type": "https://billfold.dev/problems/internal_error",
        "title": "Internal server error",
        "status": 500,
        "instance": "/crash",
        "code": "internal_error",
    }
    for secret in ("hunter2", "db.internal", "SecretLeakError", "Traceback"):
        assert secret not in response.text

"""The SDK's pure parts: `Retry-After` parsing, the pagination bound, error mapping, the
device-signature bytes (equal to what the server verifies), and the public API."""

from __future__ import annotations

import base64
import email.utils
import importlib
import inspect
import pkgutil
import re
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st

import billfold.client
import billfold.client.resources
from billfold.app import create_app
from billfold.client import (
    ApiError,
    AsyncBillfold,
    AuthenticationError,
    Billfold,
    BillfoldClientError,
    DeviceSigner,
    PaginationLimitError,
    PermissionDeniedError,
    RefreshTokenInvalidError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
    iterate,
)
from billfold.client._transport import RETRY_DELAY_MAX_S, _retry_after_s
from billfold.client.errors import error_for
from billfold.client.signing import request_message, step_up_message
from billfold.client.types import Page
from billfold.identity.users import signatures as server_signatures
from billfold.identity.users.signatures import DeviceAlgorithm, decode_signature
from billfold.kit.settings import Settings
from client.sdk_support import collect_unclosed_connections

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_-/?=&%", max_size=40)


@given(st.integers(min_value=0, max_value=10**12))
def test_retry_after_in_seconds_is_capped(seconds: int) -> None:
    assert _retry_after_s(str(seconds), now_s=0) == min(float(seconds), RETRY_DELAY_MAX_S)


@given(st.integers(min_value=-100, max_value=100))
def test_retry_after_as_an_http_date_counts_from_now(offset_s: int) -> None:
    now_s = 1_700_000_000.0
    date = email.utils.formatdate(now_s + offset_s, usegmt=True)
    assert _retry_after_s(date, now_s=now_s) == min(max(float(offset_s), 0.0), RETRY_DELAY_MAX_S)


@given(st.text(max_size=30))
def test_retry_after_never_raises(value: str) -> None:
    delay = _retry_after_s(value, now_s=1_700_000_000.0)
    assert delay is None or 0 <= delay <= RETRY_DELAY_MAX_S


def test_malformed_retry_after_is_ignored() -> None:
    for value in (None, "", "soon", "-5", "1.5", "²"):
        assert _retry_after_s(value, now_s=0) is None


def _pages(sizes: list[int]) -> Iterator[Page[int]]:
    counter = 0
    for index, size in enumerate(sizes):
        items = list(range(counter, counter + size))
        counter += size
        last = index == len(sizes) - 1
        yield {"items": items, "next_cursor": None if last else f"c{index}"}


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=20))
def test_iterate_yields_every_item_of_every_page_in_order(sizes: list[int]) -> None:
    pages = _pages(sizes)
    cursors: list[str | None] = []

    def fetch(cursor: str | None) -> Page[int]:
        cursors.append(cursor)
        return next(pages)

    assert list(iterate(fetch, pages_max=len(sizes))) == list(range(sum(sizes)))
    assert cursors == [None] + [f"c{index}" for index in range(len(sizes) - 1)]


def test_iterate_stops_at_its_bound_and_on_a_repeated_cursor() -> None:
    endless: Page[int] = {"items": [1], "next_cursor": None}

    def fetch(cursor: str | None) -> Page[int]:
        return {"items": [1], "next_cursor": f"after-{cursor}"}

    with pytest.raises(PaginationLimitError, match="more than 3 pages"):
        list(iterate(fetch, pages_max=3))
    with pytest.raises(PaginationLimitError, match="repeated"):
        list(iterate(lambda cursor: {"items": [], "next_cursor": "same"}))
    with pytest.raises(ValueError, match="pages_max"):
        list(iterate(lambda cursor: endless, pages_max=0))


def test_errors_map_by_code_then_by_status() -> None:
    problem = {"code": "refresh_token_invalid", "title": "Unauthorized", "detail": "Sign in."}
    error = error_for(status=401, problem=problem, request_id="r1")
    assert type(error) is RefreshTokenInvalidError
    assert isinstance(error, AuthenticationError)
    assert (error.code, error.detail, error.request_id) == (
        "refresh_token_invalid",
        "Sign in.",
        "r1",
    )
    # A known code with an unexpected status falls back to the status.
    assert type(error_for(status=400, problem=problem, request_id=None)).__name__ == (
        "BadRequestError"
    )
    extended = error_for(
        status=422,
        problem={"type": "t", "title": "x", "status": 422, "code": "c", "errors": [1], "limit": 5},
        request_id=None,
    )
    assert type(extended) is ValidationError
    assert extended.extensions == {"errors": [1], "limit": 5}
    assert type(error_for(status=502, problem={}, request_id=None)) is ServerError
    teapot = error_for(status=418, problem={}, request_id=None)
    assert type(teapot) is ApiError and teapot.code == "http_418"


@pytest.mark.parametrize(
    "problem", [{"code": None}, {"code": 502, "title": 5}, {"code": ""}, {"code": ["x"]}]
)
def test_a_gateways_json_without_a_string_code_gets_the_status_code(
    problem: dict[str, object],
) -> None:
    error = error_for(status=502, problem=problem, request_id=None)
    assert type(error) is ServerError
    assert (error.code, error.title, error.detail) == ("http_502", "", None)


@given(
    device_id=_TEXT,
    method=st.sampled_from(["GET", "POST", "put"]),
    target=_TEXT,
    timestamp=st.integers(min_value=0, max_value=10**11).map(str),
    nonce=_TEXT,
    body=st.binary(max_size=64),
)
def test_the_signed_request_bytes_are_the_servers(
    device_id: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> None:
    fields = {
        "device_id": device_id,
        "method": method,
        "target": target,
        "timestamp": timestamp,
        "nonce": nonce,
        "body": body,
    }
    assert request_message(**fields) == server_signatures.request_message(**fields)  # type: ignore[arg-type]


@given(
    challenge=_TEXT,
    amount=st.integers(min_value=1, max_value=2**127 - 1),
    currency=st.sampled_from(["USD", "EUR", "BTC"]),
    payee=st.text(min_size=1, max_size=20),
)
def test_the_step_up_bytes_are_the_servers(
    challenge: str, amount: int, currency: str, payee: str
) -> None:
    fields = {
        "step_up_id": "stp_" + "0" * 32,
        "challenge": challenge,
        "amount": amount,
        "currency": currency,
        "payee": payee,
    }
    assert step_up_message(**fields) == server_signatures.step_up_message(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["ed25519", "p256"])
def test_a_signature_verifies_with_the_servers_code(algorithm: str) -> None:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    signer = DeviceSigner(key, device_id="dev_" + "1" * 32)
    assert signer.algorithm == algorithm
    message = b"billfold-device-request-v1\nexample"
    signature = decode_signature(signer.sign(message))
    assert signature is not None
    public_key = signer.public_key()
    der = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
    assert server_signatures.signature_verifies(
        algorithm=DeviceAlgorithm(algorithm),
        public_key_der=der,
        message=message,
        signature=signature,
    )
    assert not server_signatures.signature_verifies(
        algorithm=DeviceAlgorithm(algorithm),
        public_key_der=der,
        message=message + b"!",
        signature=signature,
    )


def test_the_public_api_is_pinned() -> None:
    assert sorted(billfold.client.__all__) == [
        "ApiError",
        "AsyncBillfold",
        "AuthenticationError",
        "BATCH_SIZE_MAX",
        "BadRequestError",
        "Billfold",
        "BillfoldClientError",
        "BillfoldOperator",
        "BillfoldUser",
        "ConflictError",
        "DEFAULT_BASE_URL",
        "DeviceSigner",
        "NotFoundError",
        "NotSignedInError",
        "PaginationLimitError",
        "PayloadTooLargeError",
        "PermissionDeniedError",
        "RETRIES_MAX",
        "RateLimitedError",
        "RefreshTokenInvalidError",
        "ServerError",
        "TIMEOUT_S",
        "TransportError",
        "UnexpectedResponseError",
        "ValidationError",
        "iterate",
        "iterate_async",
        "new_account_id",
        "new_transfer_id",
        "transfer_body",
    ]
    for name in billfold.client.__all__:
        assert hasattr(billfold.client, name)


def _sdk_paths() -> set[str]:
    """Every `/v1…` path the SDK's source names, parameters written `{}`."""
    root = Path(billfold.client.__file__).parent
    found: set[str] = set()
    for source in root.rglob("*.py"):
        for path in re.findall(r'f?"(/v1[^"]*)"', source.read_text()):
            found.add(re.sub(r"\{[^}]*\}", "{}", path))
    return found


def test_the_sdk_names_every_route_of_the_api(tmp_path: Path) -> None:
    collect_unclosed_connections()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    api_paths = {
        re.sub(r"\{[^}]*\}", "{}", path)
        for path in app.openapi()["paths"]
        if path.startswith("/v1/")
    }
    assert api_paths == _sdk_paths()


_SHAPES: dict[str, str] = {
    "FeeTier": "FeeTierBody",
    "FeeRule": "FeeRuleBody",
    "FeeSchedule": "FeeScheduleResponse",
    "FeeLine": "FeeLineResponse",
    "FeeQuote": "FeeQuoteResponse",
    "FxRates": "RatesResponse",
    "FxQuote": "QuoteResponse",
    "FxConversion": "ConversionResponse",
    "FxSettings": "FxSettingsResponse",
    "JsonWebKey": "JsonWebKey",
    "JsonWebKeySet": "JsonWebKeySet",
    "Pii": "PiiResponse",
    "PiiSearch": "PiiSearchResponse",
    "Token": "billfold__privacy__schemas__TokenResponse",
    "Detokenized": "DetokenizedResponse",
    "Consent": "ConsentResponse",
    "ConsentList": "ConsentList",
    "ExportedUser": "ExportedUser",
    "ExportedConsent": "ExportedConsent",
    "PiiExport": "ExportResponse",
    "Erasure": "ErasureResponse",
    "AuditEntry": "AuditEntryResponse",
    "RiskRule": "RuleResponse",
    "RiskRuleDetail": "RuleDetail",
    "RiskRuleVersion": "RuleVersionResponse",
    "RiskRuleEvaluation": "EvaluateResponse",
    "RiskRuleHit": "RuleHitResponse",
    "RiskDecisionSummary": "DecisionSummary",
    "RiskDecision": "DecisionDetail",
    "AuditCheckpoint": "CheckpointResponse",
    "AuditInclusionProof": "InclusionProofResponse",
    "WebhookEndpoint": "EndpointResponse",
    "WebhookAttempt": "AttemptResponse",
    "WebhookDelivery": "DeliveryResponse",
    "Event": "EventResponse",
    "EventReplay": "ReplayResponse",
    "Wallet": "WalletResponse",
    "WalletList": "WalletsResponse",
    "Merchant": "MerchantResponse",
    "SystemAccount": "SystemAccountResponse",
    "SystemAccounts": "SystemAccountsResponse",
    "KycTier": "HolderTierResponse",
    "LimitOverride": "LimitOverrideResponse",
    "LimitInForce": "LimitResponse",
    "UserLimits": "HolderLimitsResponse",
    "PaymentStateChange": "StateChangeResponse",
    "PaymentFee": "FeeResponse",
    "PaymentTransfer": "TransferSummary",
    "Refund": "RefundResponse",
    "Dispute": "DisputeResponse",
    "Payment": "PaymentResponse",
    "SplitRule": "SplitRuleResponse",
    "MoneyRequest": "MoneyRequestResponse",
    "NotificationReceipt": "NotificationReceipt",
    "RiskCase": "CaseResponse",
    "RiskCaseDetail": "CaseDetailResponse",
    "RiskCaseDecision": "DecisionView",
    "RiskCaseResolution": "ResolutionView",
    "RiskCaseNote": "NoteResponse",
    "RiskResponse": "RiskResponseView",
    "RiskResponseReversal": "ReversalCreated",
    "RiskModel": "ModelResponse",
    "RiskModelTraining": "TrainResponse",
    "RiskModelAlert": "ModelAlertResponse",
}


def test_the_typed_answers_have_exactly_the_servers_fields(tmp_path: Path) -> None:
    """Each TypedDict names exactly the members of the server's response schema."""
    collect_unclosed_connections()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    schemas = app.openapi()["components"]["schemas"]
    for typed_name, schema_name in _SHAPES.items():
        typed = getattr(billfold.client.types, typed_name)
        assert set(typed.__annotations__) == set(schemas[schema_name]["properties"]), typed_name


_LISTINGS = {
    "iterate": "list",
    "iterate_entries": "list_entries",
    "iterate_quotes": "list_quotes",
    "iterate_deliveries": "deliveries",
    "iterate_balance_history": "balance_history",
}


def _iterators() -> Iterator[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    """Every resource's `iterate…` method, with the listing whose pages it follows."""
    for module in pkgutil.iter_modules(billfold.client.resources.__path__):
        loaded = importlib.import_module(f"billfold.client.resources.{module.name}")
        for name, kind in inspect.getmembers(loaded, inspect.isclass):
            if kind.__module__ != loaded.__name__:
                continue
            for method, listing in _LISTINGS.items():
                if method in vars(kind):
                    yield f"{name}.{method}", getattr(kind, method), getattr(kind, listing)


def test_every_iterator_takes_its_listings_filters() -> None:
    """`iterate(…)` follows `list(…)`'s cursors with the same filters: an iterator that
    dropped one (risk decisions by `user_id`, say) could only walk everything."""
    found = list(_iterators())
    assert len(found) >= 20
    for name, iterator, listing in found:
        takes = set(inspect.signature(iterator).parameters) - {"pages_max"}
        filters = set(inspect.signature(listing).parameters) - {"cursor"}
        assert takes == filters, name


def test_a_proxys_html_error_page_is_a_typed_error_retried_only_when_allowed() -> None:
    attempts: list[httpx.Request] = []
    status = 502

    def proxy(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        return httpx.Response(status, text="<html>Bad gateway</html>", headers={"Server": "nginx"})

    delays: list[float] = []
    with Billfold(
        api_key="bf_test_x",
        base_url="http://h",
        http_transport=httpx.MockTransport(proxy),
        sleep=delays.append,
    ) as billfold:
        with pytest.raises(ServerError) as gateway:
            billfold.accounts.create(ledger="USD", code=1)
        assert gateway.value.code == "http_502"
        assert len(attempts) == 4 and len(delays) == 3
        assert len({attempt.headers["Idempotency-Key"] for attempt in attempts}) == 1
        attempts.clear()
        status = 403
        with pytest.raises(PermissionDeniedError):
            billfold.accounts.create(ledger="USD", code=1)
        assert len(attempts) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>Sign in to the Wi-Fi</html>", "text/html"),
        (b"\xff\xfe{", None),
        (b'"ok"', "text/plain"),
    ],
    ids=["captive portal", "not text", "json under another type"],
)
def test_a_success_that_is_not_json_is_a_typed_error(body: bytes, content_type: str | None) -> None:
    """A wrong base_url or a captive portal answers 200 with a page: that was a bare
    json.JSONDecodeError, outside the SDK's errors. A page that happens to parse (`"ok"`
    as text/plain) is no more Billfold's: it was returned, to fail later as a TypeError."""
    headers = {"Content-Type": content_type} if content_type else {}

    def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers=headers)

    with (
        Billfold(
            api_key="bf_test_x", base_url="http://h", http_transport=httpx.MockTransport(portal)
        ) as billfold,
        pytest.raises(UnexpectedResponseError) as unexpected,
    ):
        billfold.accounts.get("acc_" + "0" * 32)
    assert isinstance(unexpected.value, BillfoldClientError)
    assert unexpected.value.status == 200
    assert unexpected.value.content_type == content_type


def _gzip_that_is_not(request: httpx.Request) -> httpx.Response:
    """A proxy that labels a plain body `Content-Encoding: gzip` (not read yet, as from a
    socket: a `content=` response would be decoded in the handler)."""
    stream = request.url.path.endswith("/stream")
    media_type = "text/event-stream" if stream else "application/json"
    headers = {"Content-Type": media_type, "Content-Encoding": "gzip"}
    return httpx.Response(200, stream=httpx.ByteStream(b"{}"), headers=headers)


def test_a_body_that_does_not_decode_is_a_typed_error() -> None:
    """httpx.DecodingError escaped the SDK's errors, from plain calls and streams alike."""
    with Billfold(
        api_key="bf_test_x",
        base_url="http://h",
        http_transport=httpx.MockTransport(_gzip_that_is_not),
    ) as billfold:
        with pytest.raises(UnexpectedResponseError, match="does not decode") as undecodable:
            billfold.accounts.list()
        assert undecodable.value.status == 200
        with pytest.raises(UnexpectedResponseError, match="does not decode"):
            list(billfold.events.stream())


@pytest.mark.anyio
async def test_the_async_client_refuses_an_answer_that_is_not_billfolds() -> None:
    answers = iter([httpx.Response(200, text='"ok"'), _gzip_that_is_not(httpx.Request("GET", "/"))])

    async def answer(request: httpx.Request) -> httpx.Response:
        return next(answers)

    async with AsyncBillfold(
        api_key="bf_test_x", base_url="http://h", http_transport=httpx.MockTransport(answer)
    ) as billfold:
        with pytest.raises(UnexpectedResponseError, match="is not JSON"):
            await billfold.accounts.list()
        with pytest.raises(UnexpectedResponseError, match="does not decode"):
            await billfold.accounts.list()


def test_a_stream_answered_with_a_page_is_a_typed_error() -> None:
    """A success that is not `text/event-stream` (a captive portal's page) read as a stream
    with no events: `events.stream()` ended at once, as if the server had closed it."""

    def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>Sign in</html>", headers={"Content-Type": "text/html"}
        )

    with (
        Billfold(
            api_key="bf_test_x", base_url="http://h", http_transport=httpx.MockTransport(portal)
        ) as billfold,
        pytest.raises(UnexpectedResponseError, match="not an event stream") as unexpected,
    ):
        list(billfold.events.stream())
    assert unexpected.value.content_type == "text/html"

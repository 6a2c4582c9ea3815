"""Responses agree with the application's own `/openapi.json`, checked as schemathesis's
stricter checks check them (status_code_conformance, content_type_conformance,
response_headers_conformance, response_schema_conformance, positive_data_acceptance): a
few deterministic requests where the fuzz in `test_openapi_fuzz.py` would need luck or
state to find the disagreement."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema_rs
import schemathesis
from pydantic import BaseModel, ValidationError
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks

from billfold.fx.schemas import QuoteRequest
from billfold.identity.operators.payloads import (
    AccountUnfreezePayload,
    LedgerAdjustmentPayload,
    LimitIncreasePayload,
)
from billfold.identity.types import Scope
from billfold.identity.users.schemas import MfaCompleteRequest, StepUpAnswerRequest
from billfold.kit.ids import InvalidId, parse_id
from billfold.ledger.types import AMOUNT_MAX
from identity.identity_support import bootstrap_tenant, create_key
from ledger.ledger_api_support import (
    Keys,
    account_id,
    api,
    assert_problem,
    auth,
    make_keys,
    open_account,
    transfer,
)

INT64_MAX = 2**63 - 1
BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
RESPONSE_CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def _disagreements(document: dict[str, Any], response: httpx.Response) -> list[str]:
    """What schemathesis's response checks report about `response` under `document`."""
    schema = schemathesis.openapi.from_dict(document)
    request = response.request
    operation = schema.find_operation_by_path(request.method, request.url.path)
    assert operation is not None, (request.method, request.url.path)
    names = re.findall(r"{(\w+)}", operation.path)
    case = operation.Case(path_parameters=dict.fromkeys(names, "x"))
    found = []
    for check in RESPONSE_CHECKS:
        try:
            case.validate_response(response, checks=[check])
        except FailureGroup as failures:
            found += [f"{check.__name__}: {failure.title}" for failure in failures.exceptions]
    return found


def _float_bounds(value: object, where: str = "") -> list[str]:
    """Where `value` holds a numeric bound as a float."""
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return []
    found = [
        f"{where}/{key}" for key, item in value.items() if key in BOUNDS and isinstance(item, float)
    ]
    for key, item in value.items():
        found += _float_bounds(item, f"{where}/{key}")
    return found


def test_integer_bounds_are_documented_exactly_as_the_request_models_check_them(
    database_url: str,
) -> None:
    """FastAPI's OpenAPI model made every bound a float: 2**63 - 1 was documented as 2**63 and
    2**127 - 1 as 2**127, so a value the document allowed was refused as `validation_failed`
    (schemathesis: positive_data_acceptance on POST /v1/transfers/batch)."""
    keys: Keys = make_keys(database_url)
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
        assert _float_bounds(document) == []
        properties = document["components"]["schemas"]["TransferCreateRequest"]["properties"]
        timeout_max = properties["timeout_s"]["maximum"]
        assert timeout_max == INT64_MAX
        amount = properties["amount"]["anyOf"][0]["anyOf"]
        assert {"type": "integer", "minimum": 0, "maximum": AMOUNT_MAX} in amount
        # The string form, exactly as read: 0 to 2^127-1 without leading zeros (the
        # pattern was `^[0-9]{1,39}$`, which admitted 39-digit numbers past the maximum).
        [text] = [option["pattern"] for option in amount if option["type"] == "string"]
        for value in ("0", "7", str(AMOUNT_MAX)):
            assert re.fullmatch(text, value), value
        for value in ("07", str(AMOUNT_MAX + 1), "9" * 39):
            assert re.fullmatch(text, value) is None, value

        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]

        def batch(**fields: Any) -> httpx.Response:
            body = {"transfers": [transfer(debit, credit, flags=["pending"], **fields)]}
            return client.post("/v1/transfers/batch", json=body, headers=auth(keys.writer))

        at_maximum = batch(timeout_s=timeout_max)
        assert at_maximum.status_code == 200, at_maximum.text  # a per-transfer result
        assert _disagreements(document, at_maximum) == []
        assert_problem(batch(timeout_s=timeout_max + 1), 422, "validation_failed")
        largest = batch(amount=AMOUNT_MAX, id=f"txf_{account_id()[4:]}")
        assert largest.status_code == 200, largest.text
        assert_problem(batch(amount=AMOUNT_MAX + 1), 422, "validation_failed")


def _pydantic_bounds(value: object, where: str = "") -> list[str]:
    """Where `value` holds a bound under pydantic's own name (`ge`, `le`, `gt`, `lt`)."""
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return []
    found = [f"{where}/{key}" for key in value if key in ("ge", "le", "gt", "lt")]
    for key, item in value.items():
        found += _pydantic_bounds(item, f"{where}/{key}")
    return found


def test_bounds_use_json_schema_keywords(database_url: str) -> None:
    """`Annotated[JsonInt, Field(ge=0, le=…)]` was documented as `{"ge": 0, "le": …}`,
    which JSON Schema does not know: a client generated from the document saw no bounds
    on a transfer's `code`, a payment's `expires_in_s` or a response's `limit_bps`."""
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    assert _pydantic_bounds(document) == []
    code = document["components"]["schemas"]["TransferCreateRequest"]["properties"]["code"]
    # The ledger's range (the model only keeps absurd numbers out; the ledger answers
    # `code_must_not_be_zero` and `code_exceeds_maximum` for the rest).
    assert {"type": "integer", "minimum": 1, "maximum": 65_535} in code["anyOf"]
    expires = document["components"]["schemas"]["MerchantPaymentCreate"]["properties"]
    assert {"type": "integer", "minimum": 1, "maximum": 2_592_000} in expires["expires_in_s"][
        "anyOf"
    ]


def test_every_rate_limited_operation_documents_the_503_of_an_unreachable_limiter(
    database_url: str,
) -> None:
    """With limits in Redis and Redis down, a credential's request and a public sign-in are
    503 `rate_limiter_unavailable` (README: `BILLFOLD_REDIS_TIMEOUT_S`): that status was in
    no operation's responses (schemathesis: status_code_conformance)."""
    keys: Keys = make_keys(database_url)
    with api(database_url, redis_url=UNREACHABLE_REDIS, redis_timeout_s=0.5) as client:
        document = client.get("/openapi.json").json()
        responses = [
            client.get("/v1/accounts", headers=auth(keys.reader)),
            client.post(
                "/v1/accounts", json={"ledger": "USD", "code": 1}, headers=auth(keys.writer)
            ),
            client.get(f"/v1/accounts/{account_id()}", headers=auth(keys.reader)),
            client.post(
                "/v1/sessions",
                json={
                    "tenant_id": f"ten_{keys.tenant_id.hex}",
                    "identifier": "someone@example.com",
                    "password": "not the password",
                },
            ),
        ]
    for response in responses:
        assert_problem(response, 503, "rate_limiter_unavailable")
        assert _disagreements(document, response) == [], response.request.url
    for path, item in document["paths"].items():
        for method, operation in item.items():
            documented = operation["responses"]
            if "429" in documented:
                assert "503" in documented, (method, path)


def test_risk_decisions_since_takes_only_the_documented_iso_8601_time(database_url: str) -> None:
    """`since` is documented as `format: date-time`; a number was read as seconds since the
    epoch and answered 200 (schemathesis: negative_data_rejection, `since=0`)."""
    tenant = bootstrap_tenant(database_url, name="Since")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.RISK_READ]).secret
    with api(database_url) as client:

        def decisions(since: str) -> httpx.Response:
            return client.get("/v1/risk/decisions", params={"since": since}, headers=auth(key))

        for number in ("0", "0.5", "1714521600", "-1", "1e9"):
            assert_problem(decisions(number), 422, "validation_failed")
        for moment in ("2024-05-01T00:00:00Z", "2024-05-01T02:00:00+02:00"):
            answer = decisions(moment)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"items": [], "next_cursor": None}


def _accepted_by_model(model: type[BaseModel], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


def test_bodies_taking_exactly_one_answer_say_so_in_the_document(database_url: str) -> None:
    """The second login step, a step-up answer and an FX quote (a sell or a buy amount)
    take exactly one; the document allowed both or none, which the API refuses with 422
    (schemathesis: positive_data_acceptance on POST /v1/sessions/mfa)."""
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    one_of_three = [
        {"totp_code": "123456"},
        {"recovery_code": "abcd-efgh"},
        {"totp_code": "123456", "recovery_code": None, "passkey": None},
        {"totp_code": "123456", "recovery_code": "abcd-efgh"},
        {"recovery_code": "abcd-efgh", "totp_code": "123456", "passkey": None},
        {},
        {"totp_code": None, "recovery_code": None, "passkey": None},
    ]
    one_of_two = [
        {"totp_code": "123456"},
        {"signature": "c2lnbmF0dXJl"},
        {"totp_code": None, "signature": "c2lnbmF0dXJl"},
        {"totp_code": "123456", "signature": "c2lnbmF0dXJl"},
        {},
        {"totp_code": None, "signature": None},
    ]
    sell_or_buy = [
        {"sell_amount": "100"},
        {"buy_amount": "100"},
        {"sell_amount": "100", "buy_amount": None},
        {"sell_amount": "100", "buy_amount": "100"},
        {},
    ]
    cases: list[tuple[type[BaseModel], dict[str, Any]]] = [
        *((MfaCompleteRequest, {"mfa_token": "bfu_mfa_x", **body}) for body in one_of_three),
        *((StepUpAnswerRequest, body) for body in one_of_two),
        *(
            (QuoteRequest, {"sell_currency": "EUR", "buy_currency": "USD", **body})
            for body in sell_or_buy
        ),
    ]
    for model, body in cases:
        reference = {"$ref": f"#/components/schemas/{model.__name__}"}
        documented = jsonschema_rs.validator_for({**document, **reference}).is_valid(body)
        assert documented == _accepted_by_model(model, body), (model.__name__, body)


def test_approval_payloads_document_the_ids_and_amounts_they_take(database_url: str) -> None:
    """An approval's account ids and amount were documented as any string: the API refused
    most of those (422) and took integer amounts the document did not allow (schemathesis:
    positive_data_acceptance and negative_data_rejection on POST /v1/approvals)."""
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    debit, credit = account_id(), account_id()
    adjustment = {"mode": "live", "debit_account_id": debit, "credit_account_id": credit}
    cases: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (LedgerAdjustmentPayload, {**adjustment, "amount": "100", "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": 100, "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": "000100", "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": str(AMOUNT_MAX), "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": AMOUNT_MAX, "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": AMOUNT_MAX + 1, "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": "0", "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": 0, "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": "", "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "amount": "1e3", "asset": "USD"}),
        (LedgerAdjustmentPayload, {**adjustment, "debit_account_id": "", "amount": "1"}),
        (AccountUnfreezePayload, {"mode": "test", "account_id": debit}),
        (AccountUnfreezePayload, {"mode": "test", "account_id": "acc_0"}),
        (AccountUnfreezePayload, {"mode": "test", "account_id": f"usr_{debit[4:]}"}),
        (
            LimitIncreasePayload,
            {"subject_id": debit, "limit": "daily", "asset": "USD", "amount": 5},
        ),
    ]
    for model, body in cases:
        reference = {"$ref": f"#/components/schemas/{model.__name__}"}
        documented = jsonschema_rs.validator_for({**document, **reference}).is_valid(body)
        assert documented == _accepted_by_model(model, body), (model.__name__, body)


def test_the_aggregate_filter_documents_the_public_id_it_takes(database_url: str) -> None:
    """`aggregate` was documented as any string up to 64 characters; anything but a public
    id is 422 (schemathesis: positive_data_acceptance on GET /v1/events/stream)."""
    tenant = bootstrap_tenant(database_url, name="Aggregates")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.EVENTS_READ]).secret
    hex32 = "0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"
    values = [f"pay_{hex32}", f"txf_{hex32}", "nonsense", f"PAY_{hex32}", f"pay_{hex32[:31]}"]
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
        (parameter,) = [
            parameter
            for parameter in document["paths"]["/v1/events"]["get"]["parameters"]
            if parameter["name"] == "aggregate"
        ]
        validator = jsonschema_rs.validator_for(parameter["schema"])
        for value in values:
            answer = client.get("/v1/events", params={"aggregate": value}, headers=auth(key))
            assert answer.status_code in (200, 422), answer.text
            assert validator.is_valid(value) == (answer.status_code == 200), (value, answer.text)


def test_ledger_integers_refuse_json_booleans(database_url: str) -> None:
    """`code` and `timeout_s` are documented as `integer`; `true` was read as 1 and `false`
    as 0, so `"code": true` opened an account or moved money (schemathesis:
    negative_data_rejection on POST /v1/transfers/batch, `"code": false` answered 200)."""
    keys: Keys = make_keys(database_url)
    with api(database_url) as client:
        accepted = client.post(
            "/v1/accounts", json={"ledger": "USD", "code": True}, headers=auth(keys.writer)
        )
        assert_problem(accepted, 422, "validation_failed")
        debit = open_account(client, keys.writer)["id"]
        credit = open_account(client, keys.writer)["id"]
        for fields in ({"code": True}, {"code": False}, {"timeout_s": True}):
            body = {"transfers": [transfer(debit, credit, **fields)]}
            answer = client.post("/v1/transfers/batch", json=body, headers=auth(keys.writer))
            assert_problem(answer, 422, "validation_failed")
            single = client.post(
                "/v1/transfers", json=body["transfers"][0], headers=auth(keys.writer)
            )
            assert_problem(single, 422, "validation_failed")
        integral = client.post(
            "/v1/transfers", json=transfer(debit, credit, code=1.0), headers=auth(keys.writer)
        )
        assert integral.status_code == 201, integral.text  # 1.0 is a JSON Schema integer


def _parses(prefix: str, text: str) -> bool:
    try:
        parse_id(prefix, text)
    except InvalidId:
        return False
    return True


def test_ids_in_sign_in_and_step_up_bodies_document_their_form(database_url: str) -> None:
    """A sign-in's `tenant_id` and a step-up's `device_id` were any string (and the example
    `ten_0192f3a1…` itself was refused with 400 `invalid_id`: schemathesis's examples phase
    sent it, positive_data_acceptance)."""
    with api(database_url) as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    login = schemas["billfold__identity__users__schemas__LoginRequest"]
    tenant = login["properties"]["tenant_id"]
    device = schemas["StepUpRequest"]["properties"]["device_id"]
    hex32 = "0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"
    for prefix, schema in (("ten", tenant), ("dev", device)):
        validator = jsonschema_rs.validator_for(schema)
        for text in (f"{prefix}_{hex32}", f"{prefix}_{hex32[:8]}…", "0", f"usr_{hex32}"):
            assert validator.is_valid(text) == _parses(prefix, text), (prefix, text)
    for example in tenant["examples"]:
        assert _parses("ten", example), example


def test_the_last_event_id_header_documents_the_sequence_number_it_takes(
    database_url: str,
) -> None:
    """`Last-Event-ID` was documented as any string up to 20 characters; anything but a
    sequence number is 422 (schemathesis: positive_data_acceptance on GET
    /v1/events/stream)."""
    tenant = bootstrap_tenant(database_url, name="Resume")
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.EVENTS_READ]).secret
    stream = {"events_stream_duration_max_s": 0.2, "events_stream_poll_interval_s": 0.05}
    with api(database_url, **stream) as client:
        document = client.get("/openapi.json").json()
        (parameter,) = [
            parameter
            for parameter in document["paths"]["/v1/events/stream"]["get"]["parameters"]
            if parameter["name"].lower() == "last-event-id"
        ]
        validator = jsonschema_rs.validator_for(parameter["schema"])
        for value in ("12", "0", "x", "1a", "-1"):
            answer = client.get("/v1/events/stream", headers=auth(key, **{"Last-Event-ID": value}))
            assert answer.status_code in (200, 422), answer.text
            assert validator.is_valid(value) == (answer.status_code == 200), (value, answer.text)


def test_not_found_recipients_merchants_and_unsigned_notifications_are_documented(
    database_url: str,
) -> None:
    """These answer 404 `recipient_not_found` / `merchant_not_found` and 401
    `invalid_signature`, which the document did not list (status_code_conformance)."""
    with api(database_url) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, status in [
        ("/v1/me/p2p", "404"),
        ("/v1/me/money-requests", "404"),
        ("/v1/payments", "404"),
        ("/v1/connectors/{provider}/notifications", "401"),
    ]:
        response = paths[path]["post"]["responses"][status]
        assert "application/problem+json" in response["content"], (path, status)

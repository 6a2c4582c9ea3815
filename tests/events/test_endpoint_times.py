"""Webhook endpoints and deliveries carry their times (ns since the epoch, ~1.8e18) as
decimal strings, as the ledger does: as JSON numbers beyond 2^53 (I-JSON, RFC 7493 §2.2)
JavaScript and double-based JSON libraries rounded them silently. Null stays null."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from billfold.events.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from billfold.events.schemas import AttemptResponse, DeliveryResponse, EndpointResponse
from events.events_api_support import auth, client, keys, post_transfer, wait_for
from events.events_support import Receiver, Reply

SAFE_INTEGER_MAX = 2**53 - 1
DIGITS = re.compile(r"^(0|[1-9][0-9]{0,18})$")
ENDPOINT_TIMES = (
    "created_at",
    "updated_at",
    "previous_secret_expires_at",
    "throttled_until",
    "failing_since",
)
DELIVERY_TIMES = ("next_attempt_at", "created_at", "completed_at")
DESCRIBED = "ns since the epoch, a decimal string"


@pytest.fixture
def throttling() -> Iterator[Receiver]:
    with Receiver(lambda _: Reply(status=503, body=b"busy")) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _large_integers(value: Any, where: str = "") -> list[str]:
    """Where `value` holds an integer no double carries exactly."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _large_integers(v, f"{where}/{k}")]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _large_integers(v, f"{where}/{i}")]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER_MAX:
        return [where]
    return []


def _recent(text: object) -> bool:
    """A decimal string of ns within two days around now (a rotated secret signs 24 h)."""
    return (
        isinstance(text, str)
        and bool(DIGITS.fullmatch(text))
        and (abs(int(text) - time.time_ns()) < 2 * 86_400 * 10**9)
    )


def test_endpoint_and_delivery_times_are_decimal_strings_on_the_wire(
    database_url: str, throttling: Receiver, receiver: Receiver
) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url) as api:
        busy = api.post(
            "/v1/webhook-endpoints", json={"url": throttling.url}, headers=auth(full)
        ).json()
        fine = api.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=auth(full)
        ).json()
        assert _recent(busy["created_at"]) and busy["updated_at"] == busy["created_at"]
        assert (busy["throttled_until"], busy["failing_since"]) == (None, None)
        assert busy["previous_secret_expires_at"] is None
        post_transfer(api, full)
        busy_path = f"/v1/webhook-endpoints/{busy['id']}"
        wait_for(lambda: api.get(busy_path, headers=auth(reader)).json()["failing_since"])
        fine_path = f"/v1/webhook-endpoints/{fine['id']}"
        wait_for(
            lambda: (
                all(
                    d["status"] == "succeeded"
                    for d in api.get(f"{fine_path}/deliveries", headers=auth(reader)).json()[
                        "items"
                    ]
                )
                and len(receiver.received) > 0
            )
        )
        rotated = api.post(f"{busy_path}/rotate-secret", headers=auth(full)).json()
        answers = {
            "rotated": rotated,
            "busy": api.get(busy_path, headers=auth(reader)).json(),
            "listed": api.get("/v1/webhook-endpoints", headers=auth(reader)).json(),
            "pending": api.get(f"{busy_path}/deliveries", headers=auth(reader)).json(),
            "succeeded": api.get(f"{fine_path}/deliveries", headers=auth(reader)).json(),
        }
    for name, answer in answers.items():
        assert _large_integers(answer) == [], name
    for endpoint in (rotated, answers["busy"]):
        assert all(_recent(endpoint[field]) for field in ENDPOINT_TIMES), endpoint
    for endpoint in answers["listed"]["items"]:
        assert all(endpoint[f] is None or _recent(endpoint[f]) for f in ENDPOINT_TIMES)
    # The key events of `keys` may be delivered too (the worker starts with the app).
    pending = next(d for d in answers["pending"]["items"] if d["attempt_log"])
    assert pending["status"] == "pending" and pending["completed_at"] is None
    assert _recent(pending["next_attempt_at"]) and _recent(pending["created_at"])
    assert _recent(pending["attempt_log"][0]["attempted_at"])
    assert pending["attempt_log"][0]["status_code"] == 503  # small integers stay numbers
    done = next(d for d in answers["succeeded"]["items"] if d["status"] == "succeeded")
    assert done["next_attempt_at"] is None
    assert _recent(done["created_at"]) and _recent(done["completed_at"])
    assert isinstance(done["attempts"], int) and isinstance(done["last_status_code"], int)


def test_the_document_says_decimal_string(database_url: str) -> None:
    with client(database_url, embedded_worker=False) as api:
        schemas = api.get("/openapi.json").json()["components"]["schemas"]
    fields = [("EndpointResponse", name) for name in ENDPOINT_TIMES]
    fields += [("DeliveryResponse", name) for name in DELIVERY_TIMES]
    fields += [("AttemptResponse", "attempted_at")]
    for model, name in fields:
        field = schemas[model]["properties"][name]
        [string] = [o for o in field.get("anyOf", [field]) if o.get("type") != "null"]
        assert string["type"] == "string" and string["pattern"] == DIGITS.pattern, (model, name)
        assert DESCRIBED in field["description"], (model, name)
    for model in ("EndpointResponse", "DeliveryResponse", "AttemptResponse"):
        integers = {
            name
            for name, field in schemas[model]["properties"].items()
            if "integer" in {o.get("type") for o in field.get("anyOf", [field])}
        }
        assert integers <= {
            "batch_size_max",
            "attempts",
            "last_status_code",
            "status_code",
            "duration_ms",
        }, model


def test_the_largest_times_survive_as_exact_strings() -> None:
    """A BIGINT's whole range, beyond any double's exact integers."""
    big = 2**63 - 1
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url="https://example.com/hooks",
        description="",
        event_types=[],
        status="enabled",
        disabled_reason=None,
        batch_size_max=1,
        created_at=big,
        updated_at=big - 1,
        previous_secret_expires_at=big - 2,
        throttled_until=big - 3,
        failing_since=0,
    )
    shown = EndpointResponse.of(endpoint).model_dump(mode="json")
    assert [shown[f] for f in ENDPOINT_TIMES] == [str(big - i) for i in range(4)] + ["0"]
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        status="pending",
        attempts=1,
        next_attempt_at=big,
        last_status_code=None,
        replay=0,
        created_at=big - 1,
        completed_at=None,
    )
    attempt = WebhookAttempt(
        attempted_at=big - 2, status_code=None, error="x", response_body=None, duration_ms=3
    )
    answer = DeliveryResponse.of(delivery, [attempt]).model_dump(mode="json")
    assert [answer[f] for f in DELIVERY_TIMES] == [str(big), str(big - 1), None]
    assert answer["attempt_log"][0]["attempted_at"] == str(big - 2)
    assert AttemptResponse.of(attempt).duration_ms == 3

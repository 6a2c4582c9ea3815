"""Events, the live stream and webhook endpoints through the SDK against the real
application (its dispatcher running), on both backends: every method once end to end, and
refusals as typed errors."""

from __future__ import annotations

import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import billfold.client.types
from billfold.app import create_app
from billfold.client import (
    TIMEOUT_S,
    Billfold,
    BillfoldClientError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    new_transfer_id,
)
from billfold.client.resources.events import parse_sse
from billfold.events.router import HEARTBEAT_S
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from client.sdk_support import collect_unclosed_connections, running
from events.events_support import Receiver

EVENTS = [Scope.EVENTS_READ, Scope.WEBHOOKS_WRITE, Scope.LEDGER_READ, Scope.LEDGER_WRITE]
POSTED = "com.billfold.transfer.posted.v1"
SETTINGS: dict[str, Any] = {
    "embedded_worker": True,
    "ledger_batch_window_ms": 0,
    "webhooks_allow_private": True,
    "events_poll_interval_s": 0.02,
    "events_stream_poll_interval_s": 0.05,
    "events_stream_duration_max_s": 0.5,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _transfer(billfold: Billfold) -> str:
    debit = billfold.accounts.create(ledger="USD", code=1)["id"]
    credit = billfold.accounts.create(ledger="USD", code=1)["id"]
    transfer_id = new_transfer_id()
    billfold.transfers.create(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=42,
        ledger="USD",
        code=1,
    )
    return transfer_id


def test_a_transfer_event_is_delivered_listed_streamed_and_replayed(
    database_url: str, receiver: Receiver
) -> None:
    with running(database_url, **SETTINGS) as server, server.billfold(EVENTS) as billfold:
        endpoint = billfold.webhook_endpoints.create(
            url=receiver.url, description="orders", event_types=[POSTED]
        )
        assert endpoint["id"].startswith("whe_") and endpoint["secret"] is not None
        assert endpoint["secret"].startswith("whsec_")
        transfer_id = _transfer(billfold)
        _wait_for(lambda: len(receiver.received) == 1)
        _wait_for(
            lambda: (
                billfold.webhook_endpoints.deliveries(endpoint["id"])["items"][0]["status"]
                == "succeeded"
            )
        )
        [delivery] = billfold.webhook_endpoints.iterate_deliveries(endpoint["id"], limit=1)
        assert delivery["attempt_log"][0]["status_code"] == 200
        # ns since the epoch as decimal strings: as JSON numbers they were beyond 2^53
        attempted = delivery["attempt_log"][0]["attempted_at"]
        assert isinstance(attempted, str) and int(attempted) > 2**53
        assert isinstance(delivery["completed_at"], str) and delivery["next_attempt_at"] is None
        assert int(delivery["created_at"]) <= int(delivery["completed_at"])
        assert isinstance(endpoint["created_at"], str) and int(endpoint["created_at"]) > 2**53

        events = billfold.events.list(aggregate=transfer_id)["items"]
        [posted] = [event for event in events if event["type"] == POSTED]
        assert posted["subject"] == transfer_id and posted["data"]["amount"] == "42"
        assert delivery["event_id"] == posted["id"]
        assert billfold.events.get(posted["id"]) == posted
        assert posted in list(billfold.events.iterate(limit=1, type=POSTED))

        streamed = list(billfold.events.stream(aggregate=transfer_id))
        assert [item["data"] for item in streamed] == events
        assert streamed[-1]["event"] == events[-1]["type"]
        assert (
            list(billfold.events.stream(last_event_id=streamed[-1]["id"], aggregate=transfer_id))
            == []
        )

        replay = billfold.events.replay(posted["id"], endpoint_id=endpoint["id"])
        assert len(replay["delivery_ids"]) == 1
        _wait_for(lambda: len(receiver.received) == 2)
    assert receiver.received[1].headers["webhook-id"] == posted["id"]


def test_endpoints_are_listed_changed_rotated_and_deleted(database_url: str) -> None:
    with (
        running(database_url, **SETTINGS) as server,
        server.billfold(EVENTS) as billfold,
        server.billfold([Scope.EVENTS_READ]) as reader,
    ):
        endpoint = billfold.webhook_endpoints.create(url="http://127.0.0.1:9/hook")
        second = billfold.webhook_endpoints.create(url="http://127.0.0.1:9/other")
        assert reader.webhook_endpoints.get(endpoint["id"])["secret"] is None
        assert [item["id"] for item in reader.webhook_endpoints.iterate(limit=1)] == [
            endpoint["id"],
            second["id"],
        ]
        changed = billfold.webhook_endpoints.update(
            endpoint["id"], status="disabled", event_types=[POSTED]
        )
        assert (changed["status"], changed["event_types"]) == ("disabled", [POSTED])
        rotated = billfold.webhook_endpoints.rotate_secret(endpoint["id"])
        assert rotated["secret"] not in (None, endpoint["secret"])
        assert int(rotated["previous_secret_expires_at"] or 0) > time.time_ns()
        with pytest.raises(PermissionDeniedError) as refused:
            reader.webhook_endpoints.delete(endpoint["id"])
        assert refused.value.code == "insufficient_scope"
        assert billfold.webhook_endpoints.delete(endpoint["id"]) is None
        with pytest.raises(NotFoundError):
            billfold.webhook_endpoints.get(endpoint["id"])
        # Its receiver's health (`failing_since`, `throttled_until`) is live: the server's
        # worker may have tried to deliver the key events to it meanwhile.
        live = ("failing_since", "throttled_until", "secret")
        [listed] = billfold.webhook_endpoints.list()["items"]
        assert {k: v for k, v in listed.items() if k not in live} == {
            k: v for k, v in second.items() if k not in live
        }


def test_event_refusals_are_typed(database_url: str) -> None:
    with (
        running(database_url, **{**SETTINGS, "webhooks_allow_private": False}) as server,
        server.billfold(EVENTS) as billfold,
    ):
        with pytest.raises(ValidationError):
            billfold.webhook_endpoints.create(url="http://127.0.0.1/hook")
        misspelt = "com.billfold.trnasfer.posted.v1"
        with pytest.raises(ValidationError) as unknown:
            billfold.webhook_endpoints.create(
                url="https://example.com/hook", event_types=[misspelt]
            )
        assert unknown.value.code == "invalid_event_filter"
        assert misspelt in (unknown.value.detail or "")
        assert unknown.value.problem["unknown_event_types"] == [misspelt]
        with pytest.raises(NotFoundError):
            billfold.events.get("evt_" + "0" * 32)
        with pytest.raises(ValidationError):
            list(billfold.events.stream(aggregate="nonsense"))
        with server.billfold([Scope.LEDGER_READ]) as other:
            with pytest.raises(PermissionDeniedError):
                list(other.events.stream())
            with pytest.raises(PermissionDeniedError):
                other.events.list()


def test_parse_sse_keeps_complete_events_only() -> None:
    lines = [
        "retry: 1000",
        "",
        ": keep-alive",
        "",
        "id: 7",
        "event: t",
        'data: {"id": "evt_1"}',
        "",
        "id: 8",
        "event: t",
    ]
    assert list(parse_sse(iter(lines))) == [
        {"id": "7", "event": "t", "data": {"id": "evt_1"}}  # type: ignore[typeddict-item]
    ]
    assert issubclass(ValidationError, BillfoldClientError)


def test_a_quiet_stream_outwaits_the_servers_keep_alive() -> None:
    """A stream with nothing to say gets a keep-alive comment every HEARTBEAT_S (15 s): a
    read timeout of the client's usual `timeout_s` (10 s) ended it with `TransportError`
    `ReadTimeout` before the first one came. Other requests keep `timeout_s`."""
    timeouts: dict[str, dict[str, float]] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts[request.url.path] = request.extensions["timeout"]
        if request.url.path == "/v1/events/stream":
            return httpx.Response(
                200, text=": keep-alive\n\n", headers={"Content-Type": "text/event-stream"}
            )
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    with Billfold(
        api_key="bf_test_x", base_url="http://h", http_transport=httpx.MockTransport(answer)
    ) as billfold:
        assert list(billfold.events.stream()) == []
        billfold.events.list()
    stream = timeouts["/v1/events/stream"]
    assert stream["read"] >= 3 * HEARTBEAT_S
    assert stream["connect"] == stream["write"] == stream["pool"] == TIMEOUT_S
    assert set(timeouts["/v1/events"].values()) == {TIMEOUT_S}


def _members(hint: object) -> set[object]:
    return set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}


def test_the_webhook_types_type_each_field_as_the_server_sends_it(tmp_path: Path) -> None:
    """Times are decimal strings (the TypedDicts said `int`), small counts are integers."""
    collect_unclosed_connections()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    schemas = app.openapi()["components"]["schemas"]
    scalars = {"string": str, "integer": int, "boolean": bool, "null": type(None)}
    shapes = {
        "WebhookEndpoint": "EndpointResponse",
        "WebhookAttempt": "AttemptResponse",
        "WebhookDelivery": "DeliveryResponse",
    }
    for typed_name, schema_name in shapes.items():
        hints = typing.get_type_hints(getattr(billfold.client.types, typed_name))
        for name, field in schemas[schema_name]["properties"].items():
            if field.get("type") == "array":
                continue
            expected = {scalars[option["type"]] for option in field.get("anyOf", [field])}
            assert _members(hints[name]) == expected, (typed_name, name)

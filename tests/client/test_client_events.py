"""Events, the live stream and webhook endpoints through the SDK against the real
application (its dispatcher running), on both backends: every method once end to end, and
refusals as typed errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

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
from client.sdk_support import running
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
        assert (rotated["previous_secret_expires_at"] or 0) > time.time_ns()
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
            return httpx.Response(200, text=": keep-alive\n\n")
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

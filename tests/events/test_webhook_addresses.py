"""A delivery tries each checked address of its host in turn: only the first used to be
tried, so a host whose first address cannot be reached (an IPv6 route that does not work, a
server that is down) failed every delivery though its next address answered. Every address
is still checked (SSRF) before any is tried, and the request still names the host."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

import httpcore
import pytest
from sqlalchemy import select

from billfold.events.models import WebhookAttempt
from billfold.events.ssrf import UnsafeWebhookUrl, resolve_target
from billfold.events.webhooks import _CheckedAddresses
from billfold.kit.clock import ManualClock
from events.events_support import Receiver, add_endpoint, deliveries, emit_event, harness

pytestmark = pytest.mark.anyio

NOBODY_V6 = "::1"  # the receiver listens on 127.0.0.1 only: refused at once
NOBODY_V4 = "127.0.0.2"


def _resolve_to(monkeypatch: pytest.MonkeyPatch, answers: Mapping[str, Sequence[str]]) -> None:
    """DNS, for this test: each name in `answers` resolves to its addresses, in order."""
    lookup = socket.getaddrinfo

    def resolving(host: str | bytes | None, port: Any, *arguments: Any, **keywords: Any) -> Any:
        addresses = answers.get(host) if isinstance(host, str) else None
        if addresses is None:
            return lookup(host, port, *arguments, **keywords)
        return [
            info for address in addresses for info in lookup(address, port, *arguments, **keywords)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolving)


async def test_a_delivery_falls_back_to_the_next_checked_address(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolve_to(monkeypatch, {"a.example": [NOBODY_V6, NOBODY_V4, "127.0.0.1"]})
    with Receiver() as receiver:
        port = receiver.port
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, f"http://a.example:{port}/hooks")
            await emit_event(h)
            await h.worker.drain()
            [delivery] = await deliveries(h)
    assert delivery.status == "succeeded"
    [request] = receiver.received
    assert request.headers["host"] == f"a.example:{port}"


async def test_when_no_address_connects_the_attempt_names_each(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolve_to(monkeypatch, {"a.example": [NOBODY_V6, NOBODY_V4]})
    with Receiver() as receiver:
        port = receiver.port
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, f"http://a.example:{port}/hooks")
            await emit_event(h)
            await h.worker.drain()
            [delivery] = await deliveries(h)
            async with h.unit_of_work.read() as session:
                [attempt] = list(await session.scalars(select(WebhookAttempt)))
    assert delivery.status == "pending" and receiver.received == []
    assert attempt.status_code is None
    assert NOBODY_V6 in (attempt.error or "") and NOBODY_V4 in (attempt.error or "")


async def test_every_address_is_checked_before_any_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One private address among public ones refuses the host: it could be the one tried."""
    _resolve_to(monkeypatch, {"mixed.example": ["8.8.8.8", "10.0.0.1"]})
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_target("https://mixed.example/hook", allow_private=False)
    _resolve_to(monkeypatch, {"public.example": ["2606:4700:4700::1111", "8.8.8.8", "8.8.8.8"]})
    target = await resolve_target("https://public.example/hook", allow_private=False)
    assert target.addresses == ("2606:4700:4700::1111", "8.8.8.8")


class _Unanswered(httpcore.AsyncNetworkBackend):
    """A network where no address answers: each attempt waits out its timeout."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, float | None]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.tried.append((host, timeout))
        raise httpcore.ConnectTimeout("timed out")


async def test_an_address_that_never_answers_leaves_time_for_the_next() -> None:
    """Each attempt gets an equal share of what is left of the connect timeout: the first
    address used to be given all of it, so the next was never reached."""
    addresses = _CheckedAddresses()
    network = _Unanswered()
    addresses._network = network  # type: ignore[assignment]
    addresses.pin("a.example", ["2001:db8::1", "192.0.2.1"])
    with pytest.raises(httpcore.ConnectTimeout, match=r"192\.0\.2\.1"):
        await addresses.connect_tcp("a.example", 443, timeout=10.0)
    assert [host for host, _ in network.tried] == ["2001:db8::1", "192.0.2.1"]
    first, second = (timeout for _, timeout in network.tried)
    assert first is not None and 4.0 < first <= 5.0
    assert second is not None and 9.0 < second <= 10.0

"""Webhook deliveries: Standard Webhooks signatures a `standardwebhooks` receiver accepts,
secret rotation, the retry schedule, 410 Gone, Retry-After, dead letters, replays, order
per aggregate, and SSRF refusals."""

from __future__ import annotations

import gzip
import importlib.abc
import json
import random
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpcore._synchronization as httpcore_sync
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import Engine, select
from sqlalchemy import event as sqlalchemy_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from billfold.events import service, webhooks
from billfold.events.models import WebhookAttempt, WebhookEndpoint
from billfold.events.ssrf import ResolvedTarget, UnsafeWebhookUrl, resolve_target
from billfold.events.webhooks import (
    ATTEMPTS_MAX,
    RESOLVED_TTL_S,
    RETRY_DELAYS_S,
    Outcome,
    first_delivery_id,
)
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock, SystemClock
from billfold.kit.ids import new_id
from events.events_support import (
    Received,
    Receiver,
    Reply,
    add_endpoint,
    deliveries,
    emit_event,
    harness,
    scope,
)

pytestmark = pytest.mark.anyio


async def test_a_standardwebhooks_receiver_accepts_our_delivery_and_rejects_forgeries(
    isolated_database_url: str,
) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            endpoint = await add_endpoint(h, receiver.url)
            event_id = await emit_event(h)
            await h.worker.drain()
    [request] = receiver.received
    assert request.headers["webhook-id"] == f"evt_{event_id.hex}"
    body = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert body["specversion"] == "1.0" and body["id"] == f"evt_{event_id.hex}"
    assert body["type"] == "com.billfold.payment.captured.v1"
    assert body["data"] == {"amount": "250", "currency": "EUR"}
    tampered = request.body.replace(b'"250"', b'"999"')
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(tampered, request.headers)
    other = "whsec_" + "A" * 32
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)


async def test_a_delivery_is_a_structured_cloudevent_of_the_http_binding(
    isolated_database_url: str,
) -> None:
    """CloudEvents' JSON format: "Such a representation MUST use the media type
    application/cloudevents+json"; the HTTP binding's structured mode carries it so."""
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            await add_endpoint(h, receiver.url)
            event_id = await emit_event(h)
            await h.worker.drain()
    [request] = receiver.received
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert not any(name.lower().startswith("ce-") for name in request.headers)
    message = HTTPMessage(headers=dict(request.headers), body=request.body)
    read = from_http(message, JSONFormat())
    assert read.get_id() == f"evt_{event_id.hex}"
    assert read.get_type() == "com.billfold.payment.captured.v1"
    assert read.get_data() == {"amount": "250", "currency": "EUR"}


async def test_a_stale_timestamp_is_rejected_by_the_receiver(isolated_database_url: str) -> None:
    ten_minutes_ago = ManualClock(start_ns=time.time_ns() - 600 * NANOSECONDS_PER_SECOND)
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=ten_minutes_ago) as h:
            endpoint = await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
    [request] = receiver.received
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(endpoint.secret).verify(request.body, request.headers)


async def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(
    isolated_database_url: str,
) -> None:
    clock = ManualClock(start_ns=time.time_ns())
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            old = await add_endpoint(h, receiver.url)
            old_secret = old.secret
            async with h.unit_of_work.begin() as session:
                rotated = await service.rotate_secret(
                    session, scope=scope(h), endpoint_id=old.id, overlap_s=60, now_ns=clock.now_ns()
                )
            await emit_event(h)
            await h.worker.drain()
            clock.advance(seconds=61)
            await emit_event(h)
            await h.worker.drain()
    during, after = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, rotated.secret):
        Webhook(secret).verify(during.body, _now(during))
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(rotated.secret).verify(after.body, _now(after))
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(after.body, _now(after))


def _now(request: Received) -> dict[str, str]:
    """The headers as received (the manual clock stays within the receiver's tolerance)."""
    return request.headers


async def test_failures_follow_the_retry_schedule_then_dead_letter(
    isolated_database_url: str,
) -> None:
    clock = ManualClock()
    with Receiver(lambda _: Reply(status=500, body=b"x" * 5000)) as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            h.worker.sender._rng = random.Random(7)
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            assert len(receiver.received) == 1
            for attempt, delay_s in enumerate(RETRY_DELAYS_S, start=2):
                [delivery] = await deliveries(h)
                assert delivery.status == "pending" and delivery.attempts == attempt - 1
                waited_s = (delivery.next_attempt_at - clock.now_ns()) / NANOSECONDS_PER_SECOND
                assert delay_s * 0.9 <= waited_s <= delay_s * 1.1
                clock.advance(seconds=waited_s * 0.5)
                await h.worker.drain()
                assert len(receiver.received) == attempt - 1, "not due yet"
                clock.advance(seconds=waited_s * 0.5 + 0.001)
                await h.worker.drain()
                assert len(receiver.received) == attempt
            [delivery] = await deliveries(h)
            assert delivery.status == "dead" and delivery.attempts == ATTEMPTS_MAX
            async with h.unit_of_work.begin() as session:
                attempts = list(await session.scalars(select(WebhookAttempt)))
    assert len(attempts) == ATTEMPTS_MAX
    assert all(a.status_code == 500 and a.response_body == "x" * 1024 for a in attempts)
    assert sum(RETRY_DELAYS_S) / 86_400 == pytest.approx(3, abs=0.05)


@pytest.mark.parametrize("status", [200, 500])
async def test_recording_reads_back_only_the_failed_deliveries(
    isolated_database_url: str, status: int
) -> None:
    """Successes are recorded by one UPDATE; only failures read their deliveries back (each
    has its own retry state). A round that only succeeded used to send that read all the
    same, with an empty list, for nothing."""
    statements: list[str] = []

    def seen(_c: object, _k: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()))

    with Receiver(lambda _: Reply(status=status)) as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            sqlalchemy_event.listen(Engine, "before_cursor_execute", seen)
            try:
                await h.worker.drain()
            finally:
                sqlalchemy_event.remove(Engine, "before_cursor_execute", seen)
            [delivery] = await deliveries(h)
    assert len(receiver.received) == 1
    assert delivery.status == ("succeeded" if status == 200 else "pending")
    by_id = "FROM events_webhook_deliveries WHERE events_webhook_deliveries.id IN"
    read_back = [s for s in statements if s.startswith("SELECT") and by_id in s]
    assert len(read_back) == (0 if status == 200 else 1)


async def test_410_gone_disables_the_endpoint_and_dead_letters_the_delivery(
    isolated_database_url: str,
) -> None:
    with Receiver(lambda _: Reply(status=410)) as receiver:
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            endpoint = await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            await emit_event(h)
            await h.worker.drain()
            async with h.unit_of_work.begin() as session:
                stored = await session.get(WebhookEndpoint, endpoint.id)
                assert stored is not None and stored.status == "disabled"
                assert "410" in (stored.disabled_reason or "")
            [first] = await deliveries(h)  # a disabled endpoint is sent nothing new
    assert len(receiver.received) == 1
    assert first.status == "dead" and first.attempts == 1


@pytest.mark.parametrize(("status", "outcome"), [(200, "succeeded"), (410, "dead")])
async def test_a_delivery_completes_when_its_receiver_answers_not_when_that_is_recorded(
    isolated_database_url: str, status: int, outcome: str
) -> None:
    """The receiver takes 2 s to answer; the outcome is recorded 7 s after that (the record
    waits for the other requests sent beside it, then for a transaction). The delivery
    completed with the answer: the delivery log, and the lag measured from it, must not
    count the bookkeeping."""
    clock = ManualClock()
    start = clock.now_ns()

    def slow(_: Received) -> Reply:
        clock.advance(seconds=2)
        return Reply(status=status)

    with Receiver(slow) as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            sender = h.worker.sender
            record = sender._record

            async def record_later(
                outcomes: Sequence[Outcome], health: Mapping[uuid.UUID, Any]
            ) -> None:
                clock.advance(seconds=7)
                await record(outcomes, health)

            sender._record = record_later  # type: ignore[method-assign]
            await h.worker.drain()
            [delivery] = await deliveries(h)
            async with h.unit_of_work.begin() as session:
                [attempt] = await session.scalars(select(WebhookAttempt))
    assert len(receiver.received) == 1
    assert delivery.status == outcome and delivery.last_status_code == status
    assert attempt.attempted_at == start
    assert delivery.completed_at == start + 2 * NANOSECONDS_PER_SECOND


async def test_one_record_completes_each_delivery_with_its_own_status_and_answer(
    isolated_database_url: str,
) -> None:
    """Two endpoints answer 200 and 204 at different moments; one record marks both (on
    PostgreSQL in one statement), each with its own status code and answer time."""
    clock = ManualClock()
    start = clock.now_ns()

    def answer(status: int) -> Callable[[Received], Reply]:
        def reply(_: Received) -> Reply:
            clock.advance(seconds=1)
            return Reply(status=status)

        return reply

    with Receiver(answer(200)) as ok, Receiver(answer(204)) as no_content:
        async with harness(isolated_database_url, clock=clock) as h:
            first = await add_endpoint(h, ok.url)
            second = await add_endpoint(h, no_content.url)
            await emit_event(h)
            await h.worker.drain()
            by_endpoint = {d.endpoint_id: d for d in await deliveries(h)}
    assert len(ok.received) == len(no_content.received) == 1
    assert by_endpoint[first.id].last_status_code == 200
    assert by_endpoint[second.id].last_status_code == 204
    answered = sorted(d.completed_at or 0 for d in by_endpoint.values())
    assert all(d.status == "succeeded" and d.attempts == 1 for d in by_endpoint.values())
    assert start + NANOSECONDS_PER_SECOND <= answered[0] <= answered[1]
    assert answered[1] == start + 2 * NANOSECONDS_PER_SECOND  # both answered by then


async def test_retry_after_postpones_the_next_attempt(isolated_database_url: str) -> None:
    clock = ManualClock()
    reply = Reply(status=503, headers={"Retry-After": "3600"})
    with Receiver(lambda _: reply) as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            [delivery] = await deliveries(h)
            assert delivery.next_attempt_at - clock.now_ns() >= 3600 * NANOSECONDS_PER_SECOND
            clock.advance(seconds=600)  # past the 5 s step of the schedule
            await h.worker.drain()
    assert len(receiver.received) == 1


async def test_the_timeout_bounds_the_whole_attempt_not_each_read(
    isolated_database_url: str,
) -> None:
    """A receiver that answers 200 and then sends its body a byte every 0.4 s never lets
    one read wait a second, yet takes 2.4 s: with a 1 s timeout the attempt fails."""
    reply = Reply(status=200, body=b"slowly", drip_s=0.4)
    with Receiver(lambda _: reply) as receiver:
        async with harness(isolated_database_url, webhooks_timeout_s=1) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            started = time.monotonic()
            await h.worker.drain()
            took_s = time.monotonic() - started
            [delivery] = await deliveries(h)
            async with h.unit_of_work.begin() as session:
                [attempt] = (
                    await session.scalars(
                        select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
                    )
                ).all()
    assert len(receiver.received) == 1
    assert delivery.status == "pending" and delivery.completed_at is None
    assert attempt.error == "timed out" and attempt.status_code is None
    assert 1000 <= attempt.duration_ms < 2000
    assert took_s < 2.4


async def test_an_aggregates_later_event_waits_for_its_earlier_one(
    isolated_database_url: str,
) -> None:
    clock = ManualClock()
    answers = iter([500, 200, 200, 200])
    with Receiver(lambda _: Reply(status=next(answers))) as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            await add_endpoint(h, receiver.url)
            aggregate = new_id()
            first = await emit_event(h, aggregate=aggregate, kind="payment.authorized")
            second = await emit_event(h, aggregate=aggregate, kind="payment.captured")
            await h.worker.drain()
            assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{first.hex}"]
            clock.advance(seconds=10)
            await h.worker.drain()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [f"evt_{first.hex}", f"evt_{first.hex}", f"evt_{second.hex}"]


async def test_first_delivery_ids_follow_the_log_and_derive_from_event_and_endpoint(
    isolated_database_url: str,
) -> None:
    """Deliveries are written in log order with ids that sort the same way (their indexes
    grow at the right edge); each is the one id its (event, endpoint, seq) can have."""
    with Receiver() as receiver:
        async with harness(isolated_database_url) as h:
            endpoints = [await add_endpoint(h, receiver.url) for _ in range(2)]
            for _ in range(20):
                await emit_event(h)
            await h.worker.drain()
            written = await deliveries(h)
    assert len(written) == 40
    assert [d.id for d in sorted(written, key=lambda d: d.id)] == [
        d.id for d in sorted(written, key=lambda d: (d.event_seq, d.id))
    ]
    assert {d.id.version for d in written} == {8}
    assert {d.endpoint_id for d in written} == {e.id for e in endpoints}
    for d in written:
        assert d.id == first_delivery_id(d.event_id, d.endpoint_id, d.event_seq)


async def test_a_replay_sends_the_event_again_with_the_same_id(isolated_database_url: str) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            endpoint = await add_endpoint(h, receiver.url)
            event_id = await emit_event(h)
            await h.worker.drain()
            async with h.unit_of_work.begin() as session:
                replayed = await service.replay_event(
                    session,
                    scope=scope(h),
                    event_id=event_id,
                    endpoint_id=None,
                    now_ns=time.time_ns(),
                )
            await h.worker.drain()
            async with h.unit_of_work.begin() as session:
                targeted = await service.replay_event(
                    session,
                    scope=scope(h),
                    event_id=event_id,
                    endpoint_id=endpoint.id,
                    now_ns=time.time_ns(),
                )
            await h.worker.drain()
    assert len(replayed) == 1 and len(targeted) == 1
    assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{event_id.hex}"] * 3
    bodies = [json.loads(r.body) for r in receiver.received]
    assert bodies[0] == bodies[1] == bodies[2]


async def test_event_type_filters_choose_what_an_endpoint_receives(
    isolated_database_url: str,
) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            await add_endpoint(h, receiver.url, event_types=["com.billfold.payment.refunded.v1"])
            await emit_event(h, kind="payment.captured")
            wanted = await emit_event(h, kind="payment.refunded")
            await h.worker.drain()
    assert [r.headers["webhook-id"] for r in receiver.received] == [f"evt_{wanted.hex}"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "ftp://example.com/hook",
        "https://user:pass@example.com/hook",
    ],
)
async def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_target(url, allow_private=False)


async def test_saving_an_endpoint_with_a_private_target_is_refused(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h, h.unit_of_work.begin() as session:
        with pytest.raises(UnsafeWebhookUrl):
            await service.create_endpoint(
                session,
                scope=scope(h),
                url="https://169.254.169.254/latest/meta-data",
                description="",
                event_types=[],
                allow_private=False,
                endpoints_max=20,
                now_ns=time.time_ns(),
            )


async def test_a_target_that_became_private_is_refused_at_delivery(
    isolated_database_url: str,
) -> None:
    """Saved while allowed (or before its DNS changed), checked again when sending."""
    with Receiver() as receiver:
        async with harness(
            isolated_database_url, clock=ManualClock(), webhooks_allow_private=False
        ) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            async with h.unit_of_work.begin() as session:
                [attempt] = list(await session.scalars(select(WebhookAttempt)))
    assert receiver.received == []
    assert attempt.status_code is None and (attempt.error or "").startswith("refused")


@pytest.mark.parametrize(
    "url",
    [
        f"https://{'a' * 64}.example.com/hook",  # a label is at most 63 characters
        "https://a..example.com/hook",
        "https://203.0.113.9/hook\x01",  # no HTTP client sends a control character
        "https://203.0.113.9:0/hook",  # was sent to port 443
    ],
)
async def test_urls_that_cannot_be_sent_are_refused(url: str) -> None:
    """They used to pass, or to fail with a 500 rather than a refusal."""
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_target(url, allow_private=True)


async def test_an_endpoint_whose_url_cannot_be_sent_does_not_hold_up_the_others(
    isolated_database_url: str,
) -> None:
    """One saved before its URL was checked as the sender sends it: its deliveries fail
    (and are retried); the others' are sent and recorded. Its URL used to fail the whole
    round, so what the others were sent was never recorded, and was sent again and again."""
    with Receiver() as good, Receiver() as bad:
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, good.url)
            broken = await add_endpoint(h, bad.url)
            async with h.unit_of_work.begin() as session:
                stored = await session.get(WebhookEndpoint, broken.id)
                assert stored is not None
                stored.url = f"{bad.url}/\x01"
            await emit_event(h)
            await h.worker.drain()
            rows = {row.endpoint_id: row for row in await deliveries(h)}
            async with h.unit_of_work.read() as session:
                [refused] = list(
                    await session.scalars(
                        select(WebhookAttempt).where(
                            WebhookAttempt.delivery_id == rows[broken.id].id
                        )
                    )
                )
    assert len(good.received) == 1 and bad.received == []
    assert sorted(row.status for row in rows.values()) == ["pending", "succeeded"]
    assert rows[broken.id].attempts == 1
    assert (refused.error or "").startswith("refused: not a valid URL")


def _resolve_names(
    monkeypatch: pytest.MonkeyPatch, answers: Mapping[str, str]
) -> list[str | bytes | None]:
    """DNS, for this test: each name in `answers` resolves to its address (read at each
    lookup, so a test may change it), any other as usual. The names asked, in order."""
    lookup = socket.getaddrinfo
    asked: list[str | bytes | None] = []

    def resolving(host: str | bytes | None, *arguments: Any, **keywords: Any) -> Any:
        asked.append(host)
        address = answers.get(host) if isinstance(host, str) else None
        return lookup(address or host, *arguments, **keywords)

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    return asked


async def test_an_internationalized_host_is_resolved_and_named_in_its_ascii_form(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `Host` header (and TLS SNI) carry the IDNA A-labels, as HTTP requires: a Unicode
    host name used to make the request fail to build, and with it the whole round."""
    loopback = "127.0.0.1"
    asked = _resolve_names(
        monkeypatch, {"xn--bcher-kva.example": loopback, "bücher.example": loopback}
    )
    with Receiver() as receiver:
        port = receiver.port
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, f"http://bücher.example:{port}/hooks")
            await emit_event(h)
            await h.worker.drain()
            [delivery] = await deliveries(h)
    assert delivery.status == "succeeded"
    [request] = receiver.received
    assert request.headers["host"] == f"xn--bcher-kva.example:{port}"
    assert "bücher.example" not in asked


async def test_a_delivery_connects_to_the_checked_address_whatever_dns_says_now(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the address that was checked (SSRF), not to a second lookup:
    DNS answering otherwise meanwhile (rebinding) changes nothing until the check is due
    again. Here the second answer is an address where nothing listens."""
    answers = {"a.example": "127.0.0.1"}
    _resolve_names(monkeypatch, answers)
    with Receiver() as receiver:
        port = receiver.port
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, f"http://a.example:{port}/hooks")
            await emit_event(h)
            await h.worker.drain()  # checked: 127.0.0.1
            answers["a.example"] = "127.0.0.2"
            await emit_event(h)
            await h.worker.drain()
            assert [d.status for d in await deliveries(h)] == ["succeeded", "succeeded"]
    assert len(receiver.received) == 2


async def test_a_connection_is_reused_only_for_the_host_it_was_made_for(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts at one address and port (shared hosting, an SNI-routing load balancer):
    each gets connections of its own, so TLS checks each one's certificate against its own
    name. With the checked address in the URL and the name only in SNI, the keep-alive
    connection verified for the first host carried the second host's deliveries, whose
    certificate was then never checked."""
    _resolve_names(monkeypatch, {"a.example": "127.0.0.1", "b.example": "127.0.0.1"})
    with Receiver(keep_alive=True) as receiver:
        port = receiver.port
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            kinds = {"a.example": "payment.captured", "b.example": "payment.refunded"}
            for host, kind in kinds.items():
                types = [f"com.billfold.{kind}.v1"]
                await add_endpoint(h, f"http://{host}:{port}/hooks", event_types=types)
            for kind in [*kinds.values(), *kinds.values()]:  # one after the other
                await emit_event(h, kind=kind)
                await h.worker.drain()
    peers: dict[str, set[tuple[str, int]]] = {}
    for request in receiver.received:
        peers.setdefault(request.headers["host"].split(":")[0], set()).add(request.peer)
    assert sorted(peers) == ["a.example", "b.example"]
    assert peers["a.example"].isdisjoint(peers["b.example"]), peers
    assert len(receiver.received) == 4


@pytest.mark.parametrize(
    ("body", "headers"),
    [(b"ok\x00", {}), (gzip.compress(b"ok"), {"content-encoding": "gzip"})],
    ids=["nul", "gzip"],
)
async def test_an_answer_holding_nul_bytes_is_logged_and_its_delivery_completes(
    isolated_database_url: str, body: bytes, headers: dict[str, str]
) -> None:
    """PostgreSQL cannot store U+0000 in text: an answer with such a byte (a gzip body has
    several) used to fail the round's record, so the delivery was sent again and again.
    The sender asks for answers uncompressed: the log keeps their first bytes as sent."""
    with Receiver(lambda _: Reply(status=200, headers=headers, body=body)) as receiver:
        async with harness(isolated_database_url, clock=ManualClock()) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            [delivery] = await deliveries(h)
            async with h.unit_of_work.read() as session:
                [attempt] = list(await session.scalars(select(WebhookAttempt)))
    assert delivery.status == "succeeded"
    assert attempt.status_code == 200 and "\x00" not in (attempt.response_body or "")
    assert attempt.response_body == body.decode(errors="replace").replace("\x00", "\ufffd")
    [request] = receiver.received
    assert request.headers["accept-encoding"] == "identity"


async def test_a_checked_address_is_reused_for_a_while_then_checked_again(
    isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within `RESOLVED_TTL_S` the sender sends to the address it checked, without asking
    DNS again; after it, it resolves and checks again. A refusal is never kept: the next
    attempt resolves anew (a host fixed since is then reached)."""
    clock = ManualClock()
    looked_up: list[str] = []
    refuse = True

    async def counting(url: str, *, allow_private: bool) -> ResolvedTarget:
        looked_up.append(url)
        if refuse:
            raise UnsafeWebhookUrl("refused for the test")
        return await resolve_target(url, allow_private=allow_private)

    monkeypatch.setattr(webhooks, "resolve_target", counting)
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=clock) as h:
            await add_endpoint(h, receiver.url)
            await emit_event(h)
            await h.worker.drain()
            assert (len(looked_up), len(receiver.received)) == (1, 0)
            refuse = False
            clock.advance(seconds=RETRY_DELAYS_S[0] + 1)
            await h.worker.drain()  # the retry: resolved again, as refusals are not kept
            assert (len(looked_up), len(receiver.received)) == (2, 1)
            await emit_event(h)
            clock.advance(seconds=RESOLVED_TTL_S - 1)
            await h.worker.drain()
            assert (len(looked_up), len(receiver.received)) == (2, 2)
            await emit_event(h)
            clock.advance(seconds=1)
            await h.worker.drain()
    assert (len(looked_up), len(receiver.received)) == (3, 3)
    assert set(looked_up) == {receiver.url}


async def test_a_batching_endpoint_gets_signed_cloudevents_batches_in_log_order(
    isolated_database_url: str,
) -> None:
    with Receiver() as receiver:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            endpoint = await add_endpoint(h, receiver.url, batch_size_max=4)
            one, other = new_id(), new_id()
            order = (one, other, one, other, other)
            emitted = [await emit_event(h, aggregate=a) for a in order]
            await h.worker.drain()
            rows = await deliveries(h)
    assert {d.status for d in rows} == {"succeeded"} and len(rows) == 5
    seen: list[str] = []
    for request in receiver.received:
        assert request.headers["content-type"] == "application/cloudevents-batch+json"
        assert request.headers["webhook-id"].startswith("msg_")
        batch = Webhook(endpoint.secret).verify(request.body, request.headers)
        assert isinstance(batch, list) and 1 <= len(batch) <= 4
        assert [e["sequence"] for e in batch] == sorted((e["sequence"] for e in batch), key=int)
        seen.extend(e["id"] for e in batch)
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint.secret).verify(request.body.replace(b"[", b"[ ", 1), request.headers)
    assert sorted(seen) == sorted(f"evt_{e.hex}" for e in emitted)
    for aggregate in (one, other):  # an aggregate's events arrive in order across batches
        expected = [f"evt_{e.hex}" for e, a in zip(emitted, order, strict=True) if a == aggregate]
        assert [i for i in seen if i in expected] == expected


async def test_an_endpoint_whose_secret_cannot_be_opened_does_not_hold_up_the_others(
    isolated_database_url: str,
) -> None:
    """A sealed secret this worker cannot open (no keystore here, a wrong master key, a
    destroyed key) fails that endpoint's attempt, recorded and retried like any failure;
    it used to fail the whole round, so no endpoint got anything."""
    with Receiver() as healthy, Receiver() as locked_out:
        async with harness(isolated_database_url, clock=SystemClock()) as h:
            fine = await add_endpoint(h, healthy.url)
            sealed = await add_endpoint(h, locked_out.url)
            async with h.unit_of_work.begin() as session:
                row = await session.get(WebhookEndpoint, sealed.id)
                assert row is not None
                row.secret = "enc1:" + "A" * 40  # sealed, and this worker has no keystore
            event = await emit_event(h)
            await h.worker.drain()
            by_endpoint = {d.endpoint_id: d for d in await deliveries(h)}
            async with h.unit_of_work.begin() as session:
                attempts = list(await session.scalars(select(WebhookAttempt)))
    assert [r.headers["webhook-id"] for r in healthy.received] == [f"evt_{event.hex}"]
    assert locked_out.received == []
    assert by_endpoint[fine.id].status == "succeeded"
    assert by_endpoint[sealed.id].status == "pending" and by_endpoint[sealed.id].attempts == 1
    (failed,) = [a for a in attempts if a.delivery_id == by_endpoint[sealed.id].id]
    assert failed.status_code is None and failed.error is not None
    assert failed.error.startswith("secret unavailable")


async def test_the_senders_http_stack_imports_nothing_per_request() -> None:
    """httpcore imports sniffio on each pool operation and falls back when it is missing;
    each failed import searched sys.path again (61 µs, several times per request). With the
    dependency installed the import is a dictionary lookup."""
    looked_up: list[str] = []

    class Recorder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, *_: object) -> None:
            looked_up.append(name)

    recorder = Recorder()
    sys.meta_path.insert(0, recorder)
    try:
        assert httpcore_sync.current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(recorder)
    assert looked_up == []

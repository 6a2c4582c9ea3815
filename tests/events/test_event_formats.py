"""Pure parts of events, property-tested: the CloudEvents envelope (read back by the
`cloudevents` library), signatures (verified by `standardwebhooks`), the retry schedule,
Retry-After parsing, SSRF address checks, partitions and transfer event types."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import random
import uuid

import pytest
from cloudevents.core.formats.json import JSONFormat
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from billfold.events.ledger_events import (
    TRANSFER_EVENT_NAMESPACE,
    transfer_event_id,
    transfer_event_type,
)
from billfold.events.ssrf import address_is_public
from billfold.events.types import (
    EVENT_PARTITIONS,
    SEQUENCE_DIGITS,
    Event,
    cloudevent,
    cloudevent_json,
    partition_of,
    rfc3339,
    sequence_attribute,
)
from billfold.events.webhooks import (
    ATTEMPTS_MAX,
    RETRY_AFTER_MAX_S,
    RETRY_DELAYS_S,
    new_secret,
    next_delay_s,
    retry_after_s,
    signature_headers,
)
from billfold.ledger.types import TransferFlags

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
events = st.builds(
    Event,
    id=st.uuids(),
    tenant_id=st.uuids(),
    mode=st.sampled_from(["test", "live"]),
    type=st.sampled_from(["com.billfold.payment.captured.v1", "com.billfold.transfer.posted.v1"]),
    subject=st.from_regex(r"\A[a-z]{3}_[0-9a-f]{32}\Z"),
    aggregate_id=st.uuids(),
    partition=st.integers(0, EVENT_PARTITIONS - 1),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    occurred_at=st.integers(0, 4_102_444_800 * 10**9),
    seq=st.integers(1, 2**63 - 1),
)


@given(events)
def test_the_envelope_is_a_cloudevent_the_reference_library_reads(event: Event) -> None:
    body = cloudevent_json(event)
    read = JSONFormat().read(None, body)
    assert read.get_specversion() == "1.0"
    assert read.get_id() == f"evt_{event.id.hex}"
    assert read.get_type() == event.type
    assert read.get_subject() == event.subject
    assert read.get_source() == f"/billfold/tenants/ten_{event.tenant_id.hex}/{event.mode}"
    assert read.get_data() == event.data
    time = read.get_time()
    assert time is not None and time.tzinfo is not None
    micros = event.occurred_at // 1000
    assert int(time.timestamp() * 1_000_000) in {micros - 1, micros, micros + 1}
    assert int(json.loads(body)["sequence"]) == event.seq
    assert json.loads(body) == {**cloudevent(event), "data": event.data}


@given(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))
def test_sequences_compare_as_strings_in_log_order(first: int, second: int) -> None:
    """The CloudEvents sequence extension: "a receiver can determine the order of the
    events via a simple string-compare type of operation" (leading zeros as needed)."""
    ours, theirs = sequence_attribute(first), sequence_attribute(second)
    assert (ours < theirs) == (first < second)
    assert (ours == theirs) == (first == second)
    assert len(ours) == SEQUENCE_DIGITS


def test_the_ninth_event_comes_before_the_tenth_by_string_comparison() -> None:
    assert sequence_attribute(9) < sequence_attribute(10)
    assert sequence_attribute(10) == "0000000000000000010"


@given(st.text(max_size=200).map(str.encode), st.uuids())
def test_signatures_verify_with_every_active_secret(body: bytes, message: uuid.UUID) -> None:
    secrets = [new_secret(), new_secret()]
    now = int(datetime.datetime.now(tz=datetime.UTC).timestamp())
    headers = signature_headers(
        message_id=f"evt_{message.hex}", timestamp_s=now, body=body, secrets=secrets
    )
    for secret in secrets:
        Webhook(secret).verify(body, headers, json_parse=False)


def test_the_signature_matches_the_standard_webhooks_specification_example() -> None:
    """The worked example of the Standard Webhooks specification (spec/standard-webhooks.md,
    "Signature scheme"), byte for byte: id, timestamp, body, secret and signature."""
    headers = signature_headers(
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp_s=1614265330,
        body=b'{"test": 2432232314}',
        secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


@given(st.integers(-5, ATTEMPTS_MAX + 5), st.integers(0, 2**32))
def test_the_retry_schedule_is_bounded_and_jittered(attempts: int, seed: int) -> None:
    delay = next_delay_s(attempts, random.Random(seed))
    if not 1 <= attempts < ATTEMPTS_MAX:
        assert delay is None
        return
    assert delay is not None
    base = RETRY_DELAYS_S[attempts - 1]
    assert base * 0.9 <= delay <= base * 1.1


@given(st.text(max_size=40) | st.none())
def test_retry_after_never_fails_and_stays_bounded(value: str | None) -> None:
    parsed = retry_after_s(value, now_s=1_800_000_000)
    assert parsed is None or 0 <= parsed <= RETRY_AFTER_MAX_S


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("120", now_s=0) == 120
    assert retry_after_s("999999999", now_s=0) == RETRY_AFTER_MAX_S
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    moment = datetime.datetime(2015, 10, 21, 7, 28, tzinfo=datetime.UTC).timestamp()
    assert retry_after_s(date, now_s=moment - 30) == 30
    assert retry_after_s("soon", now_s=0) is None


@pytest.mark.parametrize(
    "date",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_retry_after_reads_all_three_http_date_formats(date: str) -> None:
    """RFC 9110 section 5.6.7: "A recipient that parses a timestamp value in an HTTP header
    field MUST accept all three HTTP-date formats" (IMF-fixdate, RFC 850, asctime)."""
    moment = datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.UTC).timestamp()
    assert retry_after_s(date, now_s=moment - 30) == 30


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_addresses_are_never_public(address: ipaddress.IPv4Address) -> None:
    assert not address_is_public(str(ipaddress.IPv6Address(f"::ffff:{address}")))
    if address.is_private or address.is_loopback or address.is_link_local:
        assert not address_is_public(str(address))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),
        ("192.0.0.8", False),  # IETF protocol assignments (RFC 6890), Python calls it global
        ("192.0.0.9", False),
        ("fec0::1", False),  # deprecated site-local (RFC 3879), Python calls it global
        ("not an address", False),
    ],
)
def test_addresses_inside_the_network_are_not_public(address: str, public: bool) -> None:
    assert address_is_public(address) is public


@given(st.uuids())
def test_partitions_are_stable_and_in_range(aggregate: uuid.UUID) -> None:
    assert partition_of(aggregate) == partition_of(uuid.UUID(bytes=aggregate.bytes))
    assert 0 <= partition_of(aggregate) < EVENT_PARTITIONS


TIMESTAMPS = st.integers(0, 2**48 * 10**6 - 1)
"""Ledger timestamps (Unix nanoseconds) whose millisecond fits the id's 48 leading bits."""


@given(st.integers(0, 127), st.uuids(), TIMESTAMPS)
def test_every_transfer_has_one_type_and_one_stable_event_id(
    flags: int, transfer: uuid.UUID, timestamp: int
) -> None:
    kind = transfer_event_type(flags)
    if flags & TransferFlags.PENDING:
        assert kind.endswith(".pending.v1")
    elif flags & TransferFlags.VOID_PENDING:
        expired = bool(flags & TransferFlags.EXPIRY)
        assert kind.endswith(".expired.v1" if expired else ".voided.v1")
    else:
        assert kind.endswith(".posted.v1")
    event_id = transfer_event_id(transfer, timestamp)
    assert event_id == transfer_event_id(transfer, timestamp)
    assert event_id != transfer
    assert event_id.version == 8 and event_id.variant == uuid.RFC_4122
    assert event_id.int >> 80 == timestamp // 10**6  # leads with the Unix millisecond
    below = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)  # all but version and variant
    hashed = uuid.uuid5(TRANSFER_EVENT_NAMESPACE, transfer.hex)
    assert event_id.int & below == hashed.int & below


@given(st.uuids(), st.uuids(), TIMESTAMPS, TIMESTAMPS)
def test_transfer_event_ids_sort_by_millisecond(
    first: uuid.UUID, second: uuid.UUID, early: int, late: int
) -> None:
    """Transfer events sort by time among themselves and among UUIDv7 ids, which lead with
    the same millisecond: the outbox's primary key grows as the sequencer copies."""
    assume(early // 10**6 < late // 10**6)
    assert transfer_event_id(first, early) < transfer_event_id(second, late)
    assert transfer_event_id(first, early) < uuid.UUID(int=(late // 10**6) << 80)


@given(events, st.text(min_size=1, max_size=40), st.sampled_from([(",", ":"), (", ", ": ")]))
def test_a_raw_payload_is_spliced_into_the_same_envelope(
    event: Event, subject: str, separators: tuple[str, str]
) -> None:
    """Channels splice the stored payload text into the envelope undecoded; whatever its
    spacing, and whatever characters the subject holds, the JSON read back is the event."""
    event = dataclasses.replace(event, subject=subject)
    stored = json.dumps(event.data, separators=separators, ensure_ascii=False)
    raw = dataclasses.replace(event, data={}, data_json=stored)
    assert json.loads(cloudevent_json(raw)) == json.loads(cloudevent_json(event))
    assert json.loads(cloudevent_json(event)) == cloudevent(event)


@given(st.integers(0, 4_102_444_800 * 10**9))
def test_rfc3339_is_the_utc_time_to_the_microsecond(timestamp_ns: int) -> None:
    moment = datetime.datetime.fromtimestamp(timestamp_ns // 1000 / 1e6, tz=datetime.UTC)
    micros = timestamp_ns // 1000
    expected = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        microseconds=micros
    )
    assert rfc3339(timestamp_ns) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((moment - expected).total_seconds()) < 1e-5

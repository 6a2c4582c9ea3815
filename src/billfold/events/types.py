"""The events vocabulary: ids, event types, partitions and the CloudEvents 1.0 JSON envelope.

An event leaves Billfold as one CloudEvents 1.0 JSON object (structured mode):

    {"specversion": "1.0", "id": "evt_…", "source": "/billfold/tenants/ten_…/test",
     "type": "com.billfold.transfer.posted.v1", "subject": "txf_…",
     "time": "2026-11-22T17:20:00.123456Z", "datacontenttype": "application/json",
     "sequence": "0000000000000000042", "data": {…}}

`sequence` (the CloudEvents sequence extension) is the event's position in Billfold's log,
zero-padded to 19 digits: the extension orders events by comparing the strings.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import Any

from billfold.kit.auth import TENANT_ID_PREFIX

__all__ = [
    "ENDPOINT_ID_PREFIX",
    "EVENT_ID_PREFIX",
    "EVENT_PARTITIONS",
    "EVENT_TYPES",
    "EVENT_TYPE_PATTERN",
    "PAYMENT_STATES",
    "SEQUENCE_DIGITS",
    "Event",
    "Reads",
    "cloudevent",
    "cloudevent_json",
    "compact_json",
    "partition_of",
    "rfc3339",
    "sequence_attribute",
]

EVENT_ID_PREFIX = "evt"
ENDPOINT_ID_PREFIX = "whe"
"""A webhook endpoint's public id (`whe_…`)."""
EVENT_PARTITIONS = 16
"""Fixed: changing it would reorder events in flight (an aggregate would change partition)."""
EVENT_TYPE_PATTERN = r"^com\.billfold\.[a-z_]+(\.[a-z_]+)*\.v[0-9]+$"
TYPE_LENGTH_MAX = 128

PAYMENT_STATES = (
    "created",
    "requires_action",
    "processing",
    "succeeded",
    "failed",
    "requires_payment",
    "authorized",
    "captured",
    "partially_refunded",
    "refunded",
    "voided",
    "expired",
    "in_review",
)
"""The states whose `com.billfold.payment.<state>.v1` a payment emits (`created` for a new
payment whatever its first state): the values of `billfold.payments.states.State`, which
this module cannot import (payments import the outbox, which imports this module); a test
keeps the two equal."""

EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "com.billfold.transfer.posted.v1": "A single-phase transfer, or the post of a pending one.",
        "com.billfold.transfer.pending.v1": "A pending (two-phase) transfer reserved the amount.",
        "com.billfold.transfer.voided.v1": "A pending transfer was voided.",
        "com.billfold.transfer.expired.v1": "A pending transfer timed out; the ledger voided it.",
        **{
            f"com.billfold.payment.{state}.v1": (
                "A payment was created (whatever its first state)."
                if state == "created"
                else f"A payment entered `{state}`."
            )
            for state in PAYMENT_STATES
        },
        "com.billfold.dispute.opened.v1": "A dispute's hold was placed; it is `open`.",
        "com.billfold.dispute.won.v1": "A dispute's hold was voided: the receiver keeps the money.",
        "com.billfold.dispute.lost.v1": "A dispute's hold was posted.",
        "com.billfold.user.created.v1": "An end user signed up.",
        "com.billfold.user.updated.v1": "An end user changed (status, identifiers erased).",
        "com.billfold.device.bound.v1": "A user bound a device key.",
        "com.billfold.device.revoked.v1": "A user's device was revoked.",
        "com.billfold.user.mfa_enrolled.v1": "A user enrolled a second factor.",
        "com.billfold.api_key.created.v1": "An API key was created.",
        "com.billfold.api_key.revoked.v1": "An API key was revoked.",
        "com.billfold.webhook_endpoint.disabled.v1": "The worker disabled a webhook endpoint.",
        "com.billfold.risk.model_drift_detected.v1": "A risk model's recent scores drifted.",
    }
)
"""Every type Billfold emits, with what it means: the catalogue a webhook endpoint's
`event_types` filter is checked against (a type outside it would never be delivered).
The emitters (`ledger_events` for the ledger's transfers, `payments.events`,
`identity.outbox_events`, `risk.scoring.service`, `webhooks`) keep their own constants;
most import the outbox, which imports this module, so it cannot import them.
`tests/events/test_event_catalogue.py` fails when one emits a type missing here: a new
type is added here too."""


@dataclass(frozen=True, slots=True)
class Event:
    """An event as read from the log."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    mode: str
    type: str
    subject: str
    aggregate_id: uuid.UUID
    partition: int
    data: dict[str, Any]
    occurred_at: int
    seq: int
    data_json: str | None = None
    """The payload as the JSON text stored in the log, when it was read raw (`data` is then
    empty): a channel that only forwards it splices it into the envelope undecoded."""


class Reads(enum.Enum):
    """What a channel reads of each event in the log."""

    NOTHING = "nothing"
    """Nothing: the cursor moves past the events (in-process, with no subscriber)."""
    ROWS = "rows"
    """The attributes without the payload (the webhook fan-out writes delivery rows)."""
    DATA = "data"
    """The payload decoded, as `Event.data` (in-process subscribers)."""
    RAW = "raw"
    """The payload as stored JSON text, as `Event.data_json` (NATS: bytes out)."""


def partition_of(aggregate_id: uuid.UUID) -> int:
    """The partition of an aggregate: stable across processes and versions (CRC-32)."""
    return zlib.crc32(aggregate_id.bytes) % EVENT_PARTITIONS


def rfc3339(timestamp_ns: int) -> str:
    """RFC 3339 UTC with microseconds, as CloudEvents `time` wants."""
    seconds, micros = divmod(timestamp_ns // 1000, 1_000_000)
    return f"{_rfc3339_seconds(seconds)}.{micros:06d}Z"


@functools.lru_cache(maxsize=4096)
def _rfc3339_seconds(seconds: int) -> str:
    """The date and time to the second: events come in bursts within one second, and
    `strftime` costs more than the rest of the envelope."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


SEQUENCE_DIGITS = 19
"""Digits of the CloudEvents `sequence` attribute: a log position (a positive BIGINT, at most
2^63 - 1, 19 digits) zero-padded, so that comparing the strings orders the events, as the
sequence extension requires ("9" would come after "10")."""


def sequence_attribute(seq: int) -> str:
    """The CloudEvents `sequence` of the event at log position `seq`."""
    return f"{seq:0{SEQUENCE_DIGITS}d}"


def cloudevent(event: Event) -> dict[str, Any]:
    """The CloudEvents 1.0 attributes and data of `event`."""
    # f-strings rather than format_id (whose prefix check costs per event, per channel)
    tenant = f"{TENANT_ID_PREFIX}_{event.tenant_id.hex}"
    return {
        "specversion": "1.0",
        "id": f"{EVENT_ID_PREFIX}_{event.id.hex}",
        "source": f"/billfold/tenants/{tenant}/{event.mode}",
        "type": event.type,
        "subject": event.subject,
        "time": rfc3339(event.occurred_at),
        "datacontenttype": "application/json",
        "sequence": sequence_attribute(event.seq),
        "data": event.data,
    }


def compact_json(value: Any) -> str:
    """`value` as compact JSON text (no spaces, UTF-8 kept): how payloads are stored."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def cloudevent_json(event: Event) -> bytes:
    """`cloudevent(event)` as compact UTF-8 JSON: the body of every delivery.

    Written out in the attributes' order rather than through `json.dumps` of a dict: the
    payload, when read raw (`data_json`), goes in as stored, undecoded; ids, the source and
    the time are hex, a fixed mode and digits, and the type and subject are escaped."""
    data = event.data_json if event.data_json is not None else compact_json(event.data)
    return (
        f'{{"specversion":"1.0","id":"{EVENT_ID_PREFIX}_{event.id.hex}",'
        f'"source":"/billfold/tenants/{TENANT_ID_PREFIX}_{event.tenant_id.hex}/{event.mode}",'
        f'"type":{encode_basestring(event.type)},"subject":{encode_basestring(event.subject)},'
        f'"time":"{rfc3339(event.occurred_at)}","datacontenttype":"application/json",'
        f'"sequence":"{sequence_attribute(event.seq)}","data":{data}}}'
    ).encode()

"""The events API's request and response models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from billfold.events.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from billfold.events.service import DESCRIPTION_LENGTH_MAX, EVENT_TYPES_FILTER_MAX
from billfold.events.ssrf import URL_LENGTH_MAX
from billfold.events.types import (
    ENDPOINT_ID_PREFIX,
    EVENT_ID_PREFIX,
    EVENT_TYPES,
    Event,
    cloudevent,
)
from billfold.events.webhooks import BATCH_SIZE_MAX
from billfold.kit.fields import JsonInt
from billfold.kit.ids import format_id
from billfold.ledger.schemas import StorableText

__all__ = [
    "DELIVERY_ID_PREFIX",
    "ENDPOINT_ID_PREFIX",
    "DeliveryPage",
    "EndpointCreateRequest",
    "EndpointPage",
    "EndpointResponse",
    "EndpointUpdateRequest",
    "EventPage",
    "EventResponse",
    "NsTime",
    "ReplayRequest",
    "ReplayResponse",
]

DELIVERY_ID_PREFIX = "whd"
_STRICT = ConfigDict(extra="forbid")

EventTypes = list[
    Annotated[
        str,
        WithJsonSchema(
            {"type": "string", "enum": sorted(EVENT_TYPES)},
            mode="validation",
        ),
    ]
]
"""A filter: the types to deliver, each one Billfold emits. Documented as that list; the
service checks it (422 `invalid_event_filter`, naming the unknown types)."""

NS_TIME_PATTERN = r"^(0|[1-9][0-9]{0,18})$"
NsTime = Annotated[
    str,
    Field(
        pattern=NS_TIME_PATTERN,
        description="ns since the epoch, a decimal string",
        examples=["1795560636674268915"],
    ),
]
"""A time in a response: ns since the epoch as a decimal string (I-JSON, RFC 7493 §2.2: a
JSON number beyond 2^53 is rounded by JavaScript and double-based parsers), as the ledger's
timestamps are. Event payloads (`data`) keep theirs: they are versioned `.v1` types."""


def _ns(value: int | None) -> str | None:
    return None if value is None else str(value)


class EndpointCreateRequest(BaseModel):
    model_config = _STRICT
    url: StorableText = Field(min_length=1, max_length=URL_LENGTH_MAX)
    description: StorableText = Field(default="", max_length=DESCRIPTION_LENGTH_MAX)
    event_types: EventTypes = Field(
        default_factory=list,
        max_length=EVENT_TYPES_FILTER_MAX,
        description="Types to deliver (com.billfold.transfer.posted.v1, …); empty: all.",
    )
    batch_size_max: JsonInt = Field(
        default=1,
        ge=1,
        le=BATCH_SIZE_MAX,
        description="1: one event per request (a CloudEvents object). More: up to that many"
        " due events per request, as a CloudEvents JSON batch (an array,"
        " application/cloudevents-batch+json); deduplicate by each event's id.",
    )


def _fields_without_null(schema: dict[str, Any]) -> None:
    """An update names at least one field, each with a value: the document offers no
    `null` (and so no `null` default) for any of them."""
    schema["minProperties"] = 1
    for field in schema.get("properties", {}).values():
        options = [option for option in field.pop("anyOf", []) if option.get("type") != "null"]
        if len(options) == 1:
            field.update(options[0])
        elif options:
            field["anyOf"] = options
        field.pop("default", None)


class EndpointUpdateRequest(BaseModel):
    """The fields to change, at least one; the others stay. A field is left out, never
    `null`: no field can be cleared, so a `null` used to be ignored and the PATCH answered
    200 having changed nothing (the document does not offer `null` either)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_fields_without_null)
    url: StorableText | None = Field(default=None, min_length=1, max_length=URL_LENGTH_MAX)
    description: StorableText | None = Field(default=None, max_length=DESCRIPTION_LENGTH_MAX)
    event_types: EventTypes | None = Field(default=None, max_length=EVENT_TYPES_FILTER_MAX)
    status: Literal["enabled", "disabled"] | None = None
    batch_size_max: JsonInt | None = Field(default=None, ge=1, le=BATCH_SIZE_MAX)

    @model_validator(mode="after")
    def _names_a_change(self) -> EndpointUpdateRequest:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: give a value or leave the field out")
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class EndpointResponse(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    status: str
    disabled_reason: str | None
    batch_size_max: int = Field(description="Most events one request carries (1: one each).")
    created_at: NsTime
    updated_at: NsTime
    previous_secret_expires_at: NsTime | None = Field(
        description="While set and in the future, deliveries are signed with both secrets"
        " (ns since the epoch, a decimal string)."
    )
    throttled_until: NsTime | None = Field(
        description="While set and in the future (ns since the epoch, a decimal string), the"
        " endpoint is paused: its receiver answered 429, 502, 503 or 504, and nothing is sent"
        " to it before then."
    )
    failing_since: NsTime | None = Field(
        description="When the first attempt since the last success failed (ns since the epoch,"
        " a decimal string; null: the last attempt succeeded). Failing for"
        " BILLFOLD_WEBHOOKS_DISABLE_AFTER_DAYS disables it."
    )
    secret: str | None = Field(
        default=None, description="The signing secret (whsec_…): shown on create and rotate only."
    )

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, *, secret: str | None = None) -> EndpointResponse:
        """`secret`: the clear secret, given on create and rotate only."""
        return cls(
            id=format_id(ENDPOINT_ID_PREFIX, endpoint.id),
            url=endpoint.url,
            description=endpoint.description,
            event_types=list(endpoint.event_types),
            status=endpoint.status,
            disabled_reason=endpoint.disabled_reason,
            batch_size_max=endpoint.batch_size_max,
            created_at=str(endpoint.created_at),
            updated_at=str(endpoint.updated_at),
            previous_secret_expires_at=_ns(endpoint.previous_secret_expires_at),
            throttled_until=_ns(endpoint.throttled_until),
            failing_since=_ns(endpoint.failing_since),
            secret=secret,
        )


class EndpointPage(BaseModel):
    items: list[EndpointResponse]
    next_cursor: str | None


class AttemptResponse(BaseModel):
    attempted_at: NsTime
    status_code: int | None
    error: str | None
    response_body: str | None = Field(description="The start of the response, truncated.")
    duration_ms: int

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptResponse:
        return cls(
            attempted_at=str(attempt.attempted_at),
            status_code=attempt.status_code,
            error=attempt.error,
            response_body=attempt.response_body,
            duration_ms=attempt.duration_ms,
        )


class DeliveryResponse(BaseModel):
    id: str
    event_id: str
    status: str = Field(description="pending, succeeded or dead (dead-lettered).")
    attempts: int
    next_attempt_at: NsTime | None = Field(
        description="When it is due next (ns since the epoch, a decimal string); null once"
        " it is no longer pending."
    )
    last_status_code: int | None
    replay: bool
    created_at: NsTime
    completed_at: NsTime | None = Field(
        description="When the receiver's 2xx (dead-lettered: the last failure) came back"
        " (ns since the epoch, a decimal string); null while pending."
    )
    attempt_log: list[AttemptResponse]

    @classmethod
    def of(cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryResponse:
        return cls(
            id=format_id(DELIVERY_ID_PREFIX, delivery.id),
            event_id=format_id(EVENT_ID_PREFIX, delivery.event_id),
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=_ns(delivery.next_attempt_at) if delivery.status == "pending" else None,
            last_status_code=delivery.last_status_code,
            replay=bool(delivery.replay),
            created_at=str(delivery.created_at),
            completed_at=_ns(delivery.completed_at),
            attempt_log=[AttemptResponse.of(a) for a in attempts],
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryResponse]
    next_cursor: str | None


class EventResponse(BaseModel):
    """A CloudEvents 1.0 event, as every channel carries it."""

    model_config = ConfigDict(extra="allow")
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    sequence: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventResponse:
        return cls.model_validate(cloudevent(event))


class EventPage(BaseModel):
    items: list[EventResponse]
    next_cursor: str | None


class ReplayRequest(BaseModel):
    model_config = _STRICT
    endpoint_id: str | None = Field(
        default=None, description="Replay to this endpoint only (whe_…); default: every one."
    )


class ReplayResponse(BaseModel):
    delivery_ids: list[str]

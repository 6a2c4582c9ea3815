"""Events (CloudEvents JSON) and webhook endpoints (API key: `events:read` to read,
`webhooks:write` to change endpoints and replay events)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    Event,
    EventPage,
    EventReplay,
    StreamedEvent,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
    WebhookEndpointPage,
)

__all__ = ["Events", "WebhookEndpoints", "parse_sse"]


class WebhookEndpoints(Resource):
    def create(
        self,
        *,
        url: str,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        batch_size_max: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """A new endpoint (https, public addresses; every type when `event_types` is
        empty, else each a type Billfold emits: a misspelt one is a `ValidationError`,
        code `invalid_event_filter`). Keep the answer's `secret`: it is shown here only."""
        body = without_none(
            {
                "url": url,
                "description": description,
                "event_types": None if event_types is None else list(event_types),
                "batch_size_max": batch_size_max,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/webhook-endpoints", json=body, idempotency_key=idempotency_key
        )
        return cast(WebhookEndpoint, answer)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> WebhookEndpointPage:
        params = without_none({"limit": limit, "cursor": cursor})
        answer = self._transport.request("GET", "/v1/webhook-endpoints", params=params)
        return cast(WebhookEndpointPage, answer)

    def iterate(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[WebhookEndpoint]:
        return iterate(lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max)

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        path = f"/v1/webhook-endpoints/{path_id(endpoint_id)}"
        return cast(WebhookEndpoint, self._transport.request("GET", path))

    def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        status: Literal["enabled", "disabled"] | None = None,
        batch_size_max: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Change what is given; the rest stays."""
        body = without_none(
            {
                "url": url,
                "description": description,
                "event_types": None if event_types is None else list(event_types),
                "status": status,
                "batch_size_max": batch_size_max,
            }
        )
        path = f"/v1/webhook-endpoints/{path_id(endpoint_id)}"
        answer = self._transport.request("PATCH", path, json=body, idempotency_key=idempotency_key)
        return cast(WebhookEndpoint, answer)

    def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        """A new signing secret (in the answer); the old one keeps signing until
        `previous_secret_expires_at` (ns since the epoch, a decimal string)."""
        path = f"/v1/webhook-endpoints/{path_id(endpoint_id)}/rotate-secret"
        return cast(WebhookEndpoint, self._transport.request("POST", path))

    def delete(self, endpoint_id: str, *, idempotency_key: str | None = None) -> None:
        """Delete the endpoint and its delivery log."""
        path = f"/v1/webhook-endpoints/{path_id(endpoint_id)}"
        self._transport.request("DELETE", path, idempotency_key=idempotency_key)

    def deliveries(
        self, endpoint_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> WebhookDeliveryPage:
        """The endpoint's deliveries, newest first, each with its attempts."""
        params = without_none({"limit": limit, "cursor": cursor})
        path = f"/v1/webhook-endpoints/{path_id(endpoint_id)}/deliveries"
        return cast(WebhookDeliveryPage, self._transport.request("GET", path, params=params))

    def iterate_deliveries(
        self, endpoint_id: str, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[WebhookDelivery]:
        return iterate(
            lambda cursor: self.deliveries(endpoint_id, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )


class Events(Resource):
    def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        aggregate: str | None = None,
        type: str | None = None,
    ) -> EventPage:
        """The tenant's events, oldest first; `aggregate` (a public id such as `txf_…`)
        and `type` narrow them."""
        params = without_none(
            {"limit": limit, "cursor": cursor, "aggregate": aggregate, "type": type}
        )
        return cast(EventPage, self._transport.request("GET", "/v1/events", params=params))

    def iterate(
        self,
        *,
        limit: int | None = None,
        aggregate: str | None = None,
        type: str | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[Event]:
        return iterate(
            lambda cursor: self.list(limit=limit, cursor=cursor, aggregate=aggregate, type=type),
            pages_max=pages_max,
        )

    def get(self, event_id: str) -> Event:
        return cast(Event, self._transport.request("GET", f"/v1/events/{path_id(event_id)}"))

    def replay(
        self,
        event_id: str,
        *,
        endpoint_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> EventReplay:
        """Deliver the event again (same `webhook-id`) to its endpoints, or to one."""
        path = f"/v1/events/{path_id(event_id)}/replay"
        body = without_none({"endpoint_id": endpoint_id})
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(EventReplay, answer)

    def stream(
        self,
        *,
        aggregate: str | None = None,
        after: int | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[StreamedEvent]:
        """Live events as they happen (Server-Sent Events): the tenant's feed or one
        aggregate's, after sequence `after` (or `last_event_id`, to resume). The server
        ends a stream after a while; call again with the last `id` received."""
        params = without_none({"aggregate": aggregate, "after": after})
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        lines = self._transport.stream_lines("/v1/events/stream", params=params, headers=headers)
        return parse_sse(lines)


def parse_sse(lines: Iterator[str]) -> Iterator[StreamedEvent]:
    """The events of a text/event-stream with `id`, `event` and a JSON `data` (comments,
    `retry` and incomplete events are skipped)."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line == "":
            data = "\n".join(fields.get("data", []))
            if "id" in fields and "event" in fields and data:
                yield {
                    "id": fields["id"][-1],
                    "event": fields["event"][-1],
                    "data": cast(Event, json.loads(data)),
                }
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))

"""Errors of the events domain, rendered as problem+json.

BillfoldError
├── NotFound
│   ├── EventNotFound            event_not_found
│   └── WebhookEndpointNotFound  webhook_endpoint_not_found
├── Conflict
│   ├── WebhookEndpointDisabled  webhook_endpoint_disabled
│   └── EventNotSubscribed       event_not_subscribed
└── ValidationFailed
    ├── UnsafeWebhookUrl         unsafe_webhook_url   (billfold.events.ssrf)
    ├── InvalidEventFilter       invalid_event_filter
    ├── TooManyWebhookEndpoints  too_many_webhook_endpoints
    └── InvalidInbound           invalid_inbound_event (billfold.events.inbound)
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ValidationFailed

__all__ = [
    "EventNotFound",
    "EventNotSubscribed",
    "InvalidEventFilter",
    "TooManyWebhookEndpoints",
    "WebhookEndpointDisabled",
    "WebhookEndpointNotFound",
]


class EventNotFound(NotFound):
    code = "event_not_found"
    title = "No such event"


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    title = "No such webhook endpoint"


class WebhookEndpointDisabled(Conflict):
    """A replay aimed at a disabled endpoint: the worker sends nothing to one, so the
    delivery would wait for ever. Enable the endpoint first."""

    code = "webhook_endpoint_disabled"
    title = "Webhook endpoint disabled"


class EventNotSubscribed(Conflict):
    """A replay aimed at an endpoint whose `event_types` leave the event out: the endpoint
    asked not to receive that type, so sending it would break its subscription. Add the
    type to its `event_types` first."""

    code = "event_not_subscribed"
    title = "Endpoint not subscribed to the event's type"


class InvalidEventFilter(ValidationFailed):
    code = "invalid_event_filter"
    title = "Invalid event type filter"


class TooManyWebhookEndpoints(ValidationFailed):
    code = "too_many_webhook_endpoints"
    title = "Too many webhook endpoints"

"""The provider protocol every connector implements, and what flows through it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from billfold.kit.errors import ServiceUnavailable

__all__ = [
    "ChargeRequest",
    "Notification",
    "NotificationType",
    "PayoutRequest",
    "Provider",
    "ProviderResponse",
    "ProviderStatus",
    "ProviderTimeout",
    "RefundRequest",
]


class ProviderTimeout(ServiceUnavailable):
    """The provider did not answer in time: the outcome is unknown until it notifies."""

    code = "provider_timeout"
    title = "Payment provider timed out"


class ProviderStatus(enum.StrEnum):
    PROCESSING = "processing"
    """Accepted; the outcome comes by notification."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"
    """The payer must complete a challenge (3-D Secure) first."""


class NotificationType(enum.StrEnum):
    CHARGE_PENDING = "charge.pending"
    CHARGE_SUCCEEDED = "charge.succeeded"
    CHARGE_FAILED = "charge.failed"
    PAYOUT_SUCCEEDED = "payout.succeeded"
    PAYOUT_FAILED = "payout.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    reference: str
    """Billfold's payment id (`pay_…`): the provider's idempotency key, echoed back."""
    amount_minor: int
    currency: str
    method: str
    """`card` or `bank_transfer`."""
    instrument: str
    """A card number (PAN) or a bank account (IBAN)."""


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    reference: str
    amount_minor: int
    currency: str
    destination: str
    """A card number or an IBAN."""


@dataclass(frozen=True, slots=True)
class RefundRequest:
    reference: str
    provider_reference: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    status: ProviderStatus
    provider_reference: str
    failure_code: str | None = None
    next_action_url: str | None = None
    amount_minor: int | None = None
    """What the provider holds for the payment, where it says (a status query's answer):
    recovery applies a status only to a payment of this amount and `currency`."""
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A provider's asynchronous message about one of Billfold's payments."""

    event_id: str
    """Unique per provider: a redelivery carries the same id."""
    type: NotificationType
    reference: str
    """The payment id Billfold gave the provider."""
    provider_reference: str
    amount_minor: int
    currency: str
    created_at_s: int
    failure_code: str | None = None
    dispute_id: str | None = None
    """The provider's dispute id, for dispute.* notifications."""


class Provider(Protocol):
    """A payment service provider. Calls may raise :class:`ProviderTimeout`."""

    name: str

    async def charge(self, request: ChargeRequest) -> ProviderResponse: ...

    async def refund(self, request: RefundRequest) -> ProviderResponse: ...

    async def payout(self, request: PayoutRequest) -> ProviderResponse: ...

    async def status(self, reference: str) -> ProviderResponse | None: ...

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], now_s: int, tolerance_s: int
    ) -> Notification:
        """The notification in `body`, after verifying its signature (or raise)."""
        ...

"""Sandbox providers for cards and bank transfers, behaving like real test environments.

The outcome is chosen by the test card number, else by the amount's last two digits (minor
units): see :data:`TEST_CARDS` and :data:`AMOUNT_SCENARIOS`. Confirmations are sent
asynchronously and signed (``connectors.signatures``) through a :class:`NotificationSender`
to Billfold's inbound endpoint, exactly as a real provider would call it. Charging the same
reference twice answers what the first charge answered and notifies nothing new; its
`status` answers what the sandbox last notified about it (succeeded or failed), else what
the charge answered: the status a lost notification is recovered from.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from billfold.connectors.senders import NotificationSender
from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header, verify
from billfold.connectors.types import (
    ChargeRequest,
    Notification,
    NotificationType,
    PayoutRequest,
    ProviderResponse,
    ProviderStatus,
    ProviderTimeout,
    RefundRequest,
)
from billfold.kit.errors import BadRequest, NotFound

__all__ = [
    "AMOUNT_MINOR_MAX",
    "AMOUNT_SCENARIOS",
    "TEST_CARDS",
    "InvalidNotification",
    "SandboxProvider",
    "Scenario",
    "scenario_for",
]

_NAMESPACE = uuid.UUID("0f3c3c52-8a57-4f7e-9a43-7d1f4f5f2b10")
_RECORDS_MAX = 100_000


class InvalidNotification(BadRequest):
    code = "invalid_notification"
    title = "Invalid notification"


class UnknownSandboxReference(NotFound):
    code = "unknown_sandbox_reference"
    title = "Unknown sandbox reference"


class Scenario(enum.StrEnum):
    SUCCESS = "success"
    DECLINED = "declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CHALLENGE = "challenge"
    """3-D Secure: the payer must complete a challenge (cards only)."""
    TIMEOUT = "timeout"
    """The call times out; the confirmation (success) arrives later anyway."""
    DUPLICATE_NOTIFICATION = "duplicate_notification"
    """Succeeds, and the confirmation is delivered twice."""
    OUT_OF_ORDER = "out_of_order"
    """Succeeds, and a stale `charge.pending` arrives after the confirmation."""


TEST_CARDS: Mapping[str, Scenario] = {
    "4242424242424242": Scenario.SUCCESS,
    "4000000000000002": Scenario.DECLINED,
    "4000000000009995": Scenario.INSUFFICIENT_FUNDS,
    "4000000000003220": Scenario.CHALLENGE,
    "4000000000000119": Scenario.TIMEOUT,
    "4000000000000259": Scenario.DUPLICATE_NOTIFICATION,
    "4000000000000341": Scenario.OUT_OF_ORDER,
}
AMOUNT_SCENARIOS: Mapping[int, Scenario] = {
    1: Scenario.DECLINED,
    2: Scenario.INSUFFICIENT_FUNDS,
    7: Scenario.OUT_OF_ORDER,
    8: Scenario.TIMEOUT,
    9: Scenario.DUPLICATE_NOTIFICATION,
}
"""By `amount_minor % 100`, for bank transfers, payouts and unknown cards."""


def scenario_for(*, instrument: str | None, amount_minor: int) -> Scenario:
    """What the sandbox does: the test card's scenario, else the amount's."""
    if instrument is not None and instrument in TEST_CARDS:
        return TEST_CARDS[instrument]
    return AMOUNT_SCENARIOS.get(amount_minor % 100, Scenario.SUCCESS)


AMOUNT_MINOR_MAX = 2**62
"""The largest amount a sandbox notification carries: the largest payment
(`billfold.payments.schemas.AMOUNT_MAX`), in minor units."""


class _Data(BaseModel):
    # Strict: each field its JSON type exactly. Lax, `"amount": true` was 1, "5000" and
    # 5000.0 were 5000: a body the sandbox never sends applied as some amount.
    model_config = ConfigDict(extra="forbid", strict=True)

    reference: str = Field(min_length=1, max_length=64)
    provider_reference: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=1, le=AMOUNT_MINOR_MAX)
    currency: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    failure_code: str | None = Field(default=None, max_length=64)
    dispute_id: str | None = Field(default=None, max_length=64)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=64)
    type: NotificationType
    created: int = Field(ge=0, le=2**40)
    data: _Data


@dataclass(slots=True)
class _Record:
    request: ChargeRequest | PayoutRequest
    response: ProviderResponse
    """What the charge (or payout) answered: a repeated call answers it again."""
    kind: str
    """`charge` or `payout`."""
    notified: list[str] = field(default_factory=list)
    outcome: ProviderResponse | None = None
    """The outcome last notified (succeeded or failed), which `status` answers."""


class SandboxProvider:
    """An in-process provider: `sandbox_card` or `sandbox_bank`."""

    def __init__(self, name: str, *, secret: bytes, sender: NotificationSender) -> None:
        self.name = name
        self.secret = secret
        self.sender = sender
        self._records: dict[str, _Record] = {}

    # -- the provider protocol

    async def charge(self, request: ChargeRequest) -> ProviderResponse:
        known = self._records.get(request.reference)
        if known is not None:
            return known.response
        instrument = request.instrument if request.method == "card" else None
        scenario = scenario_for(instrument=instrument, amount_minor=request.amount_minor)
        response = self._respond(request.reference, scenario, prefix="ch")
        self._remember(_Record(request=request, response=response, kind="charge"))
        self._notify_outcome(request.reference, scenario, kind="charge")
        if scenario is Scenario.TIMEOUT:
            raise ProviderTimeout("The sandbox timed out (test scenario).")
        return response

    async def payout(self, request: PayoutRequest) -> ProviderResponse:
        known = self._records.get(request.reference)
        if known is not None:
            return known.response
        scenario = scenario_for(instrument=None, amount_minor=request.amount_minor)
        if scenario is Scenario.CHALLENGE:
            scenario = Scenario.SUCCESS
        reference = _provider_reference("po", request.reference)
        response = ProviderResponse(ProviderStatus.PROCESSING, reference)
        self._remember(_Record(request=request, response=response, kind="payout"))
        self._notify_outcome(request.reference, scenario, kind="payout")
        if scenario is Scenario.TIMEOUT:
            raise ProviderTimeout("The sandbox timed out (test scenario).")
        return response

    async def refund(self, request: RefundRequest) -> ProviderResponse:
        return ProviderResponse(
            ProviderStatus.SUCCEEDED, _provider_reference("re", request.reference)
        )

    async def status(self, reference: str) -> ProviderResponse | None:
        """The outcome notified last, else the first answer: after a success was notified
        it says so, as a real provider's status does. Answering `processing` forever, it
        left a payment whose notification was lost `processing` for recovery too."""
        record = self._records.get(reference)
        if record is None:
            return None
        return dataclasses.replace(
            record.outcome or record.response,
            amount_minor=record.request.amount_minor,
            currency=record.request.currency,
        )

    def parse_notification(
        self, *, body: bytes, headers: Mapping[str, str], now_s: int, tolerance_s: int
    ) -> Notification:
        verify(
            secret=self.secret,
            header=headers.get(SIGNATURE_HEADER.lower()),
            body=body,
            now_s=now_s,
            tolerance_s=tolerance_s,
        )
        try:
            envelope = _Envelope.model_validate_json(body)
        except ValidationError as error:
            raise InvalidNotification("The notification body is not a sandbox event.") from error
        data = envelope.data
        return Notification(
            event_id=envelope.id,
            type=envelope.type,
            reference=data.reference,
            provider_reference=data.provider_reference,
            amount_minor=data.amount,
            currency=data.currency,
            created_at_s=envelope.created,
            failure_code=data.failure_code,
            dispute_id=data.dispute_id,
        )

    # -- what a test environment's dashboard offers

    def complete_challenge(self, reference: str, *, succeeded: bool) -> None:
        """The payer answers the 3-D Secure challenge of the charge for `reference`."""
        record = self._record(reference)
        outcome = Scenario.SUCCESS if succeeded else Scenario.DECLINED
        record.response = ProviderResponse(
            ProviderStatus.PROCESSING, record.response.provider_reference
        )
        self._notify_outcome(reference, outcome, kind="charge", failure="authentication_failed")

    def open_dispute(self, reference: str, *, amount_minor: int) -> str:
        """The cardholder disputes the charge for `reference`; the provider's dispute id."""
        record = self._record(reference)
        dispute_id = f"dp_{uuid.uuid4().hex[:24]}"
        self._send(
            NotificationType.DISPUTE_OPENED, record, amount_minor=amount_minor, dispute=dispute_id
        )
        return dispute_id

    def resolve_dispute(
        self, reference: str, *, dispute_id: str, won: bool, amount_minor: int
    ) -> None:
        kind = NotificationType.DISPUTE_WON if won else NotificationType.DISPUTE_LOST
        self._send(kind, self._record(reference), amount_minor=amount_minor, dispute=dispute_id)

    # -- inside

    def _respond(self, reference: str, scenario: Scenario, *, prefix: str) -> ProviderResponse:
        provider_reference = _provider_reference(prefix, reference)
        if scenario is Scenario.DECLINED:
            return ProviderResponse(ProviderStatus.FAILED, provider_reference, "card_declined")
        if scenario is Scenario.INSUFFICIENT_FUNDS:
            return ProviderResponse(ProviderStatus.FAILED, provider_reference, "insufficient_funds")
        if scenario is Scenario.CHALLENGE:
            return ProviderResponse(
                ProviderStatus.REQUIRES_ACTION,
                provider_reference,
                next_action_url=f"https://sandbox.billfold.dev/3ds/{provider_reference}",
            )
        return ProviderResponse(ProviderStatus.PROCESSING, provider_reference)

    def _notify_outcome(
        self, reference: str, scenario: Scenario, *, kind: str, failure: str | None = None
    ) -> None:
        record = self._records[reference]
        succeeded = NotificationType(f"{kind}.succeeded")
        failed = NotificationType(f"{kind}.failed")
        if scenario is Scenario.CHALLENGE:
            return  # nothing happens until the payer answers
        if scenario in (Scenario.DECLINED, Scenario.INSUFFICIENT_FUNDS):
            code = failure if failure is not None else scenario.value
            if scenario is Scenario.DECLINED and failure is None:
                code = "card_declined" if kind == "charge" else "declined"
            self._send(failed, record, failure_code=code)
            record.outcome = ProviderResponse(
                ProviderStatus.FAILED, record.response.provider_reference, code
            )
            return
        event_id = self._send(succeeded, record)
        record.outcome = ProviderResponse(
            ProviderStatus.SUCCEEDED, record.response.provider_reference
        )
        if scenario is Scenario.DUPLICATE_NOTIFICATION:
            self._send(succeeded, record, event_id=event_id)
        if scenario is Scenario.OUT_OF_ORDER and kind == "charge":
            self._send(NotificationType.CHARGE_PENDING, record)

    def _send(
        self,
        kind: NotificationType,
        record: _Record,
        *,
        failure_code: str | None = None,
        event_id: str | None = None,
        amount_minor: int | None = None,
        dispute: str | None = None,
    ) -> str:
        event_id = event_id or f"evt_{uuid.uuid4().hex}"
        request = record.request
        body = json.dumps(
            {
                "id": event_id,
                "type": kind.value,
                "created": int(time.time()),
                "data": {
                    "reference": request.reference,
                    "provider_reference": record.response.provider_reference,
                    "amount": request.amount_minor if amount_minor is None else amount_minor,
                    "currency": request.currency,
                    "failure_code": failure_code,
                    "dispute_id": dispute,
                },
            },
            separators=(",", ":"),
        ).encode()
        header = signature_header(secret=self.secret, timestamp_s=int(time.time()), body=body)
        self.sender.send(provider=self.name, body=body, headers={SIGNATURE_HEADER: header})
        record.notified.append(event_id)
        return event_id

    def _remember(self, record: _Record) -> None:
        if len(self._records) >= _RECORDS_MAX:
            self._records.pop(next(iter(self._records)))
        self._records[record.request.reference] = record

    def _record(self, reference: str) -> _Record:
        record = self._records.get(reference)
        if record is None:
            raise UnknownSandboxReference(f"The sandbox knows no payment {reference[:64]}.")
        return record


def _provider_reference(prefix: str, reference: str) -> str:
    return f"{prefix}_{uuid.uuid5(_NAMESPACE, reference).hex}"

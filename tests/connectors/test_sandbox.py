"""The sandbox providers: outcomes by test card or amount, idempotent charges, signed and
strictly parsed notifications."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.connectors.sandbox import (
    AMOUNT_SCENARIOS,
    TEST_CARDS,
    InvalidNotification,
    SandboxProvider,
    Scenario,
    scenario_for,
)
from billfold.connectors.senders import RecordingSender
from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header
from billfold.connectors.types import (
    ChargeRequest,
    NotificationType,
    PayoutRequest,
    ProviderStatus,
    ProviderTimeout,
)

SECRET = b"whsec_test"


def _sandbox() -> tuple[SandboxProvider, RecordingSender]:
    sender = RecordingSender()
    return SandboxProvider("sandbox_card", secret=SECRET, sender=sender), sender


def _charge(card: str, amount: int = 1_000, reference: str = "pay_1") -> ChargeRequest:
    return ChargeRequest(
        reference=reference, amount_minor=amount, currency="USD", method="card", instrument=card
    )


@given(amount=st.integers(min_value=1, max_value=2**62))
def test_unknown_instruments_follow_the_amount_rules(amount: int) -> None:
    expected = AMOUNT_SCENARIOS.get(amount % 100, Scenario.SUCCESS)
    assert scenario_for(instrument=None, amount_minor=amount) is expected
    assert scenario_for(instrument="5555555555554444", amount_minor=amount) is expected


@pytest.mark.parametrize(("card", "scenario"), list(TEST_CARDS.items()))
def test_test_cards_win_over_the_amount(card: str, scenario: Scenario) -> None:
    assert scenario_for(instrument=card, amount_minor=101) is scenario


@pytest.mark.anyio
async def test_a_charge_is_idempotent_by_reference() -> None:
    sandbox, sender = _sandbox()
    first = await sandbox.charge(_charge("4242424242424242"))
    again = await sandbox.charge(_charge("4242424242424242"))
    assert first == again and first.status is ProviderStatus.PROCESSING
    assert len(sender.outbox) == 1
    [outgoing] = sender.outbox
    parsed = sandbox.parse_notification(
        body=outgoing.body,
        headers={k.lower(): v for k, v in outgoing.headers.items()},
        now_s=json.loads(outgoing.body)["created"],
        tolerance_s=300,
    )
    assert parsed.type is NotificationType.CHARGE_SUCCEEDED
    assert parsed.reference == "pay_1" and parsed.amount_minor == 1_000
    assert await sandbox.status("pay_1") == first
    assert await sandbox.status("pay_unknown") is None


@pytest.mark.anyio
async def test_timeouts_raise_and_still_notify() -> None:
    sandbox, sender = _sandbox()
    with pytest.raises(ProviderTimeout):
        await sandbox.charge(_charge("4000000000000119"))
    with pytest.raises(ProviderTimeout):
        await sandbox.payout(
            PayoutRequest(reference="pay_2", amount_minor=108, currency="USD", destination="x")
        )
    assert len(sender.outbox) == 2


@given(body=st.binary(max_size=512))
def test_any_signed_body_that_is_not_an_event_is_refused_cleanly(body: bytes) -> None:
    sandbox, _ = _sandbox()
    header = signature_header(secret=SECRET, timestamp_s=1_000, body=body)
    with pytest.raises(InvalidNotification):
        sandbox.parse_notification(
            body=body, headers={SIGNATURE_HEADER.lower(): header}, now_s=1_000, tolerance_s=300
        )

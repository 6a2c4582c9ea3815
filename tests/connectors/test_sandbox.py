"""The sandbox providers: outcomes by test card or amount, idempotent charges, a status
that says what was notified, signed and strictly parsed notifications."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.connectors.sandbox import (
    AMOUNT_MINOR_MAX,
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
from billfold.payments.schemas import AMOUNT_MAX

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
    assert await sandbox.status("pay_unknown") is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("card", "amount", "status", "failure_code"),
    [
        ("4242424242424242", 1_000, ProviderStatus.SUCCEEDED, None),
        ("4000000000000119", 1_000, ProviderStatus.SUCCEEDED, None),  # timed out
        ("4000000000000341", 1_000, ProviderStatus.SUCCEEDED, None),  # a stale pending after
        ("4000000000000002", 1_000, ProviderStatus.FAILED, "card_declined"),
        ("5555555555554444", 1_002, ProviderStatus.FAILED, "insufficient_funds"),
    ],
)
async def test_the_status_says_what_was_notified(
    card: str, amount: int, status: ProviderStatus, failure_code: str | None
) -> None:
    """What a lost notification is recovered from: the status after the outcome was sent
    is that outcome, not the charge's first answer (`processing`); a repeated charge still
    answers what the first answered."""
    sandbox, sender = _sandbox()
    try:
        first = await sandbox.charge(_charge(card, amount))
    except ProviderTimeout:
        first = None
    answer = await sandbox.status("pay_1")
    assert answer is not None
    assert (answer.status, answer.failure_code) == (status, failure_code)
    assert (
        answer.provider_reference == json.loads(sender.outbox[0].body)["data"]["provider_reference"]
    )
    if first is not None:
        assert await sandbox.charge(_charge(card, amount)) == first


@pytest.mark.anyio
async def test_the_status_of_a_payout_and_of_a_challenge_follows_their_outcome() -> None:
    sandbox, _ = _sandbox()
    payout = PayoutRequest(reference="pay_p", amount_minor=1_008, currency="USD", destination="x")
    with pytest.raises(ProviderTimeout):
        await sandbox.payout(payout)
    answer = await sandbox.status("pay_p")
    assert answer is not None and answer.status is ProviderStatus.SUCCEEDED
    declined = PayoutRequest(reference="pay_d", amount_minor=1_001, currency="USD", destination="x")
    assert (await sandbox.payout(declined)).status is ProviderStatus.PROCESSING
    answer = await sandbox.status("pay_d")
    assert answer is not None
    assert (answer.status, answer.failure_code) == (ProviderStatus.FAILED, "declined")

    await sandbox.charge(_charge("4000000000003220", reference="pay_c"))
    answer = await sandbox.status("pay_c")
    assert answer is not None and answer.status is ProviderStatus.REQUIRES_ACTION
    sandbox.complete_challenge("pay_c", succeeded=False)
    answer = await sandbox.status("pay_c")
    assert answer is not None
    assert (answer.status, answer.failure_code) == (
        ProviderStatus.FAILED,
        "authentication_failed",
    )


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


def _signed(envelope: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(envelope).encode()
    header = signature_header(secret=SECRET, timestamp_s=1_000, body=body)
    return body, {SIGNATURE_HEADER.lower(): header}


def _envelope(**data: Any) -> dict[str, Any]:
    fields = {
        "reference": "pay_1",
        "provider_reference": "ch_1",
        "amount": 5_000,
        "currency": "USD",
        "failure_code": None,
        "dispute_id": None,
    }
    return {"id": "evt_1", "type": "charge.succeeded", "created": 1_000, "data": fields | data}


def test_the_amount_bounds_are_a_payments_bounds() -> None:
    """The sandbox carries any payment's amount, and no amount no payment can have."""
    assert AMOUNT_MINOR_MAX == AMOUNT_MAX


@pytest.mark.parametrize("amount", [1, 5_000, AMOUNT_MINOR_MAX])
def test_a_well_formed_envelope_is_parsed(amount: int) -> None:
    sandbox, _ = _sandbox()
    body, headers = _signed(_envelope(amount=amount))
    parsed = sandbox.parse_notification(body=body, headers=headers, now_s=1_000, tolerance_s=300)
    assert type(parsed.amount_minor) is int and parsed.amount_minor == amount


_NOT_AN_AMOUNT = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers().map(str),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.integers(max_value=0),
    st.integers(min_value=AMOUNT_MINOR_MAX + 1),
)
_NOT_A_STRING = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(st.text(), max_size=1)
)
_NOT_AN_INTEGER = st.one_of(
    st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.integers().map(str)
)


@st.composite
def _malformed(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed envelope with one thing wrong: the amount not a JSON integer in
    bounds, another field of another JSON type, or a field missing or added."""
    envelope = _envelope()
    where = draw(st.sampled_from(["amount", "data", "top", "missing", "extra"]))
    if where == "amount":
        envelope["data"]["amount"] = draw(_NOT_AN_AMOUNT)
    elif where == "data":
        name = draw(st.sampled_from(["reference", "provider_reference", "currency"]))
        envelope["data"][name] = draw(_NOT_A_STRING | st.none())
    elif where == "top":
        name = draw(st.sampled_from(["id", "type", "created"]))
        wrong = _NOT_AN_INTEGER if name == "created" else _NOT_A_STRING
        envelope[name] = draw(wrong | st.none())
    elif where == "missing":
        name = draw(st.sampled_from(["reference", "provider_reference", "amount", "currency"]))
        del envelope["data"][name]
    else:
        envelope["data"][draw(st.sampled_from(["amount_minor", "extra"]))] = 1
    return envelope


@given(envelope=_malformed())
def test_a_malformed_envelope_is_refused_whatever_is_wrong(envelope: dict[str, Any]) -> None:
    """Never read as a notification (so never stored, never applied): `true`, `"5000"`,
    5000.0 or an amount beyond a payment's are not an amount of minor units."""
    sandbox, _ = _sandbox()
    body, headers = _signed(envelope)
    with pytest.raises(InvalidNotification):
        sandbox.parse_notification(body=body, headers=headers, now_s=1_000, tolerance_s=300)

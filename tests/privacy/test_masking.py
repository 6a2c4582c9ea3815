"""Masking: the documented formats, properties over generated values, the log processor in
the application's logging configuration, and the scanner the suite's logs go through."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from billfold.kit.http.logging import configure_logging
from billfold.privacy import masking
from billfold.privacy.masking import (
    find_unmasked_pii,
    luhn_valid,
    mask_email,
    mask_pan,
    mask_phone,
    mask_pii_processor,
    mask_text,
    mask_value,
)
from billfold.privacy.tokenization import make_pan_token, normalize_pan


def test_the_documented_formats() -> None:
    assert mask_phone("+8613812345678") == "+86 138****5678"
    assert mask_phone("+14155550100") == "+1 415****0100"
    assert mask_pan("4242424242424242") == "**** 4242"
    assert mask_email("zhang@example.com") == "z***@example.com"
    assert mask_value("national_id", "110101199003074578") == "**** 4578"
    assert mask_value("name", "Zhang Wei") == "Z**** W**"
    assert mask_value("unknown", "anything") == "***"


def _with_luhn(body: str) -> str:
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


pans = st.builds(_with_luhn, st.from_regex(r"[2-6][0-9]{11,17}", fullmatch=True))
emails = st.from_regex(r"[a-z][a-z0-9.]{0,15}@[a-z]{1,10}\.(com|cn|org)", fullmatch=True)
phones = st.from_regex(r"\+[1-9][0-9]{9,13}", fullmatch=True)


@given(pans)
def test_a_card_number_in_text_is_masked_and_no_longer_found(pan: str) -> None:
    line = f"paid with {pan} today"
    assert find_unmasked_pii(line)
    masked = mask_text(line)
    assert pan not in masked and pan[-4:] in masked
    assert find_unmasked_pii(masked) == []


@given(emails, phones)
def test_emails_and_phones_in_text_are_masked(email: str, phone: str) -> None:
    masked = mask_text(f"user {email} phone {phone}")
    assert email not in masked and phone not in masked
    assert find_unmasked_pii(masked) == []
    assert mask_text(masked) == masked  # idempotent: processors may run twice


@pytest.mark.parametrize("phone", ["+1 (415) 555-2671", "+44 (0)20 7946 0958", "+1-415-555-2671"])
def test_a_phone_grouped_by_parentheses_is_masked(phone: str) -> None:
    """Grouped as written in the United States: such a number was left in the clear."""
    masked = mask_text(f"call {phone} back")
    assert phone not in masked and "****" in masked
    assert find_unmasked_pii(masked) == [] and mask_text(masked) == masked


@given(st.text(max_size=200))
def test_masking_never_fails_and_is_idempotent(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once


def _every_pattern(text: str) -> str:
    """`mask_text` without its checks of which patterns could match: each runs on all."""
    text = masking._EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    text = masking._CARD.sub(masking._mask_card, text)
    return masking._PHONE.sub(lambda match: mask_phone(match.group(0)), text)


_PII_ALPHABET = st.sampled_from([*"0123456789", " ", "-", "+", "@", ".", "a", "z", "_", "/"])
_pii_like = st.one_of(
    st.text(_PII_ALPHABET, max_size=60),
    st.lists(st.one_of(pans, emails, phones, st.text(_PII_ALPHABET, max_size=8)), max_size=6).map(
        "".join
    ),
)


@given(_pii_like)
def test_skipping_patterns_that_cannot_match_changes_nothing(text: str) -> None:
    assert mask_text(text) == _every_pattern(text)


@given(
    pans,
    st.from_regex(r"[0-9]{0,6}", fullmatch=True),
    st.from_regex(r"[0-9]{0,6}", fullmatch=True),
)
def test_a_card_number_beside_other_numbers_is_masked(pan: str, before: str, after: str) -> None:
    """An expiry date or an amount after the card, a quantity before it: still masked."""
    line = f"card {before} {pan} {after} EUR"
    assert find_unmasked_pii(line)
    masked = mask_text(line)
    assert pan not in masked
    assert find_unmasked_pii(masked) == []
    assert mask_text(masked) == masked


def test_a_card_number_followed_by_its_expiry_or_an_amount_is_masked() -> None:
    assert mask_text("card 4242424242424242 12/28") == "card **** 4242 12/28"
    assert mask_text("paid 4000 0566 5566 5556 100 EUR") == "paid **** 5556 100 EUR"
    assert mask_text("ref **** 4242424242424242") == "ref **** **** 4242"


def test_timestamps_and_ids_are_not_mistaken_for_pii() -> None:
    line = "at 1763830000000000000 id 01a2044695fd7000a09b333ebbb4a6e4 2026-11-22T17:21:06Z"
    assert find_unmasked_pii(line) == []


@given(pans)
def test_pan_tokens_keep_length_last_four_and_luhn(pan: str) -> None:
    token = make_pan_token(normalize_pan(pan))
    assert len(token) == len(pan) and token.endswith(pan[-4:]) and token[0] == "9"
    assert luhn_valid(token)


def test_the_processor_masks_nested_values() -> None:
    event = {"event": "login ann@example.com", "extra": {"cards": ["4242424242424242"]}}
    masked = mask_pii_processor(None, "info", event)
    assert masked == {"event": "login a***@example.com", "extra": {"cards": ["**** 4242"]}}


def test_the_processor_masks_keys_sets_objects_bytes_and_deep_values() -> None:
    event = {
        "event": "failed",
        "error": ValueError("bad email bob@example.com"),
        "emails": {"carl@example.com"},
        "by_email": {"dan@example.com": 1},
        "raw": b"fay@example.com",
        "deep": [[[[[[[[["eve@example.com"]]]]]]]]],
    }
    masked = mask_pii_processor(None, "info", event)
    assert find_unmasked_pii(json.dumps(masked, default=repr)) == [], masked
    assert masked["by_email"] == {"d***@example.com": 1}


def test_a_logged_exception_keeps_its_traceback_and_is_masked() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, processors=[mask_pii_processor])
    try:
        try:
            raise ValueError("bad email gus@example.com")
        except ValueError:
            caught = sys.exc_info()
        structlog.get_logger("test").error("later", exc_info=caught)
    finally:
        configure_logging("info")
    line = json.loads(stream.getvalue())
    assert line["exception"][0]["exc_value"] == "bad email g***@example.com"


def test_the_application_logs_pii_masked(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, processors=[mask_pii_processor])
    try:
        structlog.get_logger("test").info("user ann@example.com", phone="+8613812345678")
        logging.getLogger("plain").warning("card 4242 4242 4242 4242 declined")
        try:
            raise ValueError("bad email bob@example.com")
        except ValueError:
            logging.getLogger("plain").exception("failed")
    finally:
        configure_logging("info")
    output = stream.getvalue()
    assert find_unmasked_pii(output) == [], output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["event"] == "user a***@example.com"
    assert lines[0]["phone"] == "+86 138****5678"
    assert "**** 4242" in lines[1]["event"]
    # What other handlers (pytest's capture) receive from structlog is masked too.
    assert all("ann@example.com" not in record.getMessage() for record in caplog.records)

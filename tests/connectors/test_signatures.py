"""Notification signatures: HMAC-SHA256 over the timestamp and the exact body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.connectors.signatures import InvalidSignature, signature_header, verify

SECRET = b"whsec_test"


@given(body=st.binary(max_size=2048), timestamp=st.integers(min_value=0, max_value=10**11))
def test_a_signed_body_verifies(body: bytes, timestamp: int) -> None:
    header = signature_header(secret=SECRET, timestamp_s=timestamp, body=body)
    verify(secret=SECRET, header=header, body=body, now_s=timestamp + 10, tolerance_s=300)


@given(body=st.binary(min_size=1, max_size=512), flip=st.integers(min_value=0, max_value=511))
def test_any_changed_byte_fails(body: bytes, flip: int) -> None:
    header = signature_header(secret=SECRET, timestamp_s=1_000, body=body)
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
    with pytest.raises(InvalidSignature):
        verify(secret=SECRET, header=header, body=changed, now_s=1_000, tolerance_s=300)


@given(header=st.text(max_size=300))
def test_arbitrary_headers_never_crash_and_never_verify(header: str) -> None:
    with pytest.raises(InvalidSignature):
        verify(secret=SECRET, header=header, body=b"{}", now_s=1_000, tolerance_s=300)


def test_a_stale_signature_or_another_secret_fails() -> None:
    header = signature_header(secret=SECRET, timestamp_s=1_000, body=b"{}")
    with pytest.raises(InvalidSignature):
        verify(secret=SECRET, header=header, body=b"{}", now_s=1_301, tolerance_s=300)
    with pytest.raises(InvalidSignature):
        verify(secret=b"other", header=header, body=b"{}", now_s=1_000, tolerance_s=300)
    with pytest.raises(InvalidSignature):
        verify(secret=SECRET, header=None, body=b"{}", now_s=1_000, tolerance_s=300)

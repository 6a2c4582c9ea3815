"""Sealing kept responses (`billfold.kit.http.idempotency_sealing`): the same request opens
them, a row stored before sealing replays as it is, and a row whose status or headers were
changed in the database does not open."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.kit.errors import InvariantViolation
from billfold.kit.http.idempotency_sealing import (
    SEAL_OVERHEAD_BYTES,
    SEALED_HEADER,
    response_key,
    seal,
    unseal,
)
from billfold.kit.http.idempotency_store import StoredResponse, request_fingerprint

HEADERS = (("content-type", "application/json"), ("location", "/v1/users/usr_1"))


def _key(fingerprint_key: bytes, body: bytes) -> bytes:
    return response_key(
        fingerprint_key,
        lambda key: request_fingerprint(
            method="POST", path="/v1/users", query_string=b"", body=body, key=key
        ),
    )


@given(body=st.binary(max_size=2048), status=st.integers(min_value=200, max_value=499))
def test_the_same_request_opens_what_it_sealed(body: bytes, status: int) -> None:
    fingerprint_key = os.urandom(32)
    stored = StoredResponse(status=status, headers=HEADERS, body=body)
    key = _key(fingerprint_key, b'{"email":"a@example.com"}')
    sealed = seal(stored, key)
    assert len(sealed.body) == len(body) + SEAL_OVERHEAD_BYTES
    assert sealed.headers[-1][0] == SEALED_HEADER
    assert unseal(sealed, _key(fingerprint_key, b'{"email":"a@example.com"}')) == stored


def test_the_key_depends_on_the_request_and_the_fingerprint_key() -> None:
    fingerprint_key = os.urandom(32)
    one = _key(fingerprint_key, b'{"email":"a@example.com"}')
    assert len(one) == 32
    assert _key(fingerprint_key, b'{"email":"b@example.com"}') != one
    assert _key(os.urandom(32), b'{"email":"a@example.com"}') != one
    fingerprint = request_fingerprint(
        method="POST",
        path="/v1/users",
        query_string=b"",
        body=b'{"email":"a@example.com"}',
        key=fingerprint_key,
    )
    assert bytes.fromhex(fingerprint) != one  # the stored fingerprint is not the key


def test_a_row_stored_before_sealing_replays_as_it_is() -> None:
    stored = StoredResponse(status=201, headers=HEADERS, body=b'{"id":"usr_1"}')
    assert unseal(stored, None) is stored
    assert unseal(stored, os.urandom(32)) is stored


def test_a_row_changed_in_the_database_does_not_open() -> None:
    key = os.urandom(32)
    sealed = seal(StoredResponse(status=201, headers=HEADERS, body=b'{"id":"usr_1"}'), key)
    for changed in (
        StoredResponse(status=200, headers=sealed.headers, body=sealed.body),
        StoredResponse(status=201, headers=(HEADERS[0], sealed.headers[-1]), body=sealed.body),
        StoredResponse(status=201, headers=sealed.headers, body=sealed.body[:-1] + b"\0"),
    ):
        with pytest.raises(InvariantViolation):
            unseal(changed, key)
    with pytest.raises(InvariantViolation):
        unseal(sealed, os.urandom(32))
    with pytest.raises(InvariantViolation):
        unseal(sealed, None)

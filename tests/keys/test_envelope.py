"""The pure parts of envelope encryption: the canonical associated data and the format."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from billfold.keys.envelope import (
    FIELD_OVERHEAD_BYTES,
    FieldContext,
    canonical_aad,
    field_aad,
    open_field,
    parse_field,
    seal_field,
)
from billfold.keys.errors import DecryptionFailed

parts = st.lists(st.one_of(st.text(max_size=8), st.binary(max_size=8)), max_size=5)


def _as_bytes(values: list[str | bytes]) -> list[bytes]:
    return [value.encode() if isinstance(value, str) else value for value in values]


@given(parts, parts)
def test_different_tuples_never_encode_alike(
    left: list[str | bytes], right: list[str | bytes]
) -> None:
    if _as_bytes(left) != _as_bytes(right):
        assert canonical_aad(*left) != canonical_aad(*right)


contexts = st.builds(
    FieldContext,
    tenant_id=st.uuids(),
    purpose=st.sampled_from(["pii", "tokens"]),
    table=st.text(max_size=10),
    column=st.text(max_size=10),
    row_id=st.text(max_size=10),
)


@given(contexts, contexts, st.binary(max_size=64), st.uuids())
def test_a_field_opens_only_in_its_context(
    context: FieldContext, other: FieldContext, plaintext: bytes, data_key_id: uuid.UUID
) -> None:
    cipher = AESGCM(os.urandom(32))
    sealed = seal_field(cipher, plaintext, context=context, data_key_id=data_key_id)
    assert len(sealed) == len(plaintext) + FIELD_OVERHEAD_BYTES
    assert parse_field(sealed) == data_key_id
    assert open_field(cipher, sealed, context=context) == plaintext
    if other != context:
        with pytest.raises(DecryptionFailed):
            open_field(cipher, sealed, context=other)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_crash_the_parser(garbage: bytes) -> None:
    cipher = AESGCM(os.urandom(32))
    context = FieldContext(uuid.uuid4(), "pii", "t", "c", "r")
    with pytest.raises(DecryptionFailed):
        open_field(cipher, garbage, context=context)


@given(contexts, st.uuids())
def test_the_field_aad_is_the_documented_tuple(context: FieldContext, key_id: uuid.UUID) -> None:
    assert field_aad(context, key_id) == canonical_aad(
        "billfold.field.v1",
        context.tenant_id.bytes,
        context.purpose,
        context.table,
        context.column,
        context.row_id,
        key_id.bytes,
    )

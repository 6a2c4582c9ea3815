"""The canonical entry encoding and the checkpoint message: one encoding per value, decoded
back exactly, and anything else refused."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.audit.encoding import (
    ENTRY_DOMAIN,
    CheckpointFields,
    EntryFields,
    MalformedEncodingError,
    checkpoint_message,
    decode_entry,
    encode_entry,
    entry_hash,
    parse_checkpoint_message,
)

texts = st.none() | st.text(max_size=40)
uuids = st.uuids()
hashes = st.binary(min_size=32, max_size=32)
u64 = st.integers(0, 2**64 - 1)

entries = st.builds(
    EntryFields,
    id=uuids,
    chain_id=uuids,
    sequence=st.integers(1, 2**64 - 1),
    previous_hash=hashes,
    occurred_at=u64,
    tenant_id=st.none() | uuids,
    actor_type=texts,
    actor_id=texts,
    action=texts,
    target=texts,
    source_ip=texts,
    user_agent=texts,
    before=texts,
    after=texts,
    detail=texts,
)

key_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
checkpoints = st.builds(
    CheckpointFields,
    chain_id=uuids,
    number=st.integers(1, 2**64 - 1),
    first_sequence=st.integers(1, 2**40),
    last_sequence=st.integers(2**40, 2**64 - 1),
    root_hash=hashes,
    head_hash=hashes,
    previous_hash=hashes,
    created_at=u64,
    key_id=key_ids,
)


@given(entries)
def test_an_entry_decodes_to_itself(fields: EntryFields) -> None:
    encoded = encode_entry(fields)
    assert encoded.startswith(ENTRY_DOMAIN)
    assert decode_entry(encoded) == fields


@given(entries, entries)
def test_different_entries_have_different_encodings(
    first: EntryFields, second: EntryFields
) -> None:
    if first != second:
        assert encode_entry(first) != encode_entry(second)
        assert entry_hash(first) != entry_hash(second)


def test_moving_text_between_neighbouring_fields_changes_the_encoding() -> None:
    # Length prefixes: ("ab", "c") and ("a", "bc") must not collide, nor None and "".
    base = EntryFields(
        id=uuid.UUID(int=1),
        chain_id=uuid.UUID(int=2),
        sequence=1,
        previous_hash=bytes(32),
        occurred_at=0,
        tenant_id=None,
        actor_type="ab",
        actor_id="c",
        action="x",
        target=None,
        source_ip=None,
        user_agent=None,
        before=None,
        after=None,
        detail=None,
    )
    moved = EntryFields(**{**_as_dict(base), "actor_type": "a", "actor_id": "bc"})
    empty = EntryFields(**{**_as_dict(base), "target": ""})
    assert len({encode_entry(base), encode_entry(moved), encode_entry(empty)}) == 3


def _as_dict(fields: EntryFields) -> dict[str, object]:
    return {name: getattr(fields, name) for name in EntryFields.__slots__}


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_are_refused(data: bytes) -> None:
    try:
        fields = decode_entry(data)
    except MalformedEncodingError:
        return
    assert encode_entry(fields) == data


@given(entries, st.integers(0, 400))
def test_a_truncated_or_extended_entry_is_refused(fields: EntryFields, cut: int) -> None:
    encoded = encode_entry(fields)
    with pytest.raises(MalformedEncodingError):
        decode_entry(encoded + b"\x00")
    if cut < len(encoded):
        with pytest.raises(MalformedEncodingError):
            decode_entry(encoded[:cut])


@given(checkpoints)
def test_a_checkpoint_message_parses_to_itself(fields: CheckpointFields) -> None:
    message = checkpoint_message(fields)
    assert message.endswith(b"\n")
    assert parse_checkpoint_message(message) == fields


@given(checkpoints, st.binary(min_size=1, max_size=3))
def test_an_altered_checkpoint_message_is_refused_or_different(
    fields: CheckpointFields, junk: bytes
) -> None:
    message = checkpoint_message(fields)
    with pytest.raises(MalformedEncodingError):
        parse_checkpoint_message(message + junk)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"billfold.audit.checkpoint.v2\n",
        "billfold.audit.checkpoint.v1\nchain é\n".encode(),
        b"billfold.audit.checkpoint.v1\nchain " + b"0" * 32 + b"\nnumber 01\n",
    ],
)
def test_malformed_checkpoint_messages_are_refused(message: bytes) -> None:
    with pytest.raises(MalformedEncodingError):
        parse_checkpoint_message(message)


def test_the_checkpoint_message_is_the_documented_text() -> None:
    fields = CheckpointFields(
        chain_id=uuid.UUID(int=0),
        number=1,
        first_sequence=1,
        last_sequence=3,
        root_hash=bytes([1]) * 32,
        head_hash=bytes([2]) * 32,
        previous_hash=bytes(32),
        created_at=1_700_000_000_000_000_000,
        key_id="audit-ed25519-0123456789abcdef",
    )
    assert checkpoint_message(fields).decode() == (
        "billfold.audit.checkpoint.v1\n"
        f"chain {'0' * 32}\n"
        "number 1\n"
        "first 1\n"
        "last 3\n"
        f"root {'01' * 32}\n"
        f"head {'02' * 32}\n"
        f"previous {'00' * 32}\n"
        "time 1700000000000000000\n"
        "key audit-ed25519-0123456789abcdef\n"
    )

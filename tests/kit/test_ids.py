"""Ids: UUIDv7 inside, `<prefix>_<32 hex>` outside; the parser refuses anything else."""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.kit.ids import (
    InvalidId,
    derived_id,
    format_id,
    new_id,
    ordered_derived_id,
    parse_id,
)


def test_new_ids_are_version_7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert {value.version for value in ids} == {7}
    assert {value.variant for value in ids} == {uuid.RFC_4122}
    # Strictly increasing within a process, even for ids made in the same millisecond.
    assert all(a.int < b.int for a, b in itertools.pairwise(ids))


def test_ids_behave_as_the_standard_library_builds_them() -> None:
    """`new_id` and `derived_id` fill `uuid.UUID`'s slots without its constructor: what
    they return must be indistinguishable from a UUID built the usual way."""
    for made in (
        new_id(),
        derived_id(uuid.NAMESPACE_URL.bytes, "https://example.com"),
        ordered_derived_id(7, uuid.NAMESPACE_URL.bytes, "https://example.com"),
    ):
        standard = uuid.UUID(str(made))
        assert made == standard and hash(made) == hash(standard)
        assert (made.is_safe, repr(made), made.fields) == (
            standard.is_safe,
            repr(standard),
            standard.fields,
        )
        assert pickle.loads(pickle.dumps(made)) == made  # noqa: S301 (our own bytes)
        assert copy.deepcopy(made) == made
        with pytest.raises(TypeError):
            made.int = 0  # type: ignore[misc]


def test_a_forked_child_draws_other_random_bits_than_its_parent() -> None:
    """The random bits are read from the OS a block at a time: a child made by `fork` must
    not take the bytes its parent takes next (same millisecond, same counter: same id)."""
    new_id()  # the parent holds a block
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(writer, new_id().bytes)
        os._exit(0)
    os.close(writer)
    parent_bits = new_id().int & (2**62 - 1)
    child_bits = uuid.UUID(bytes=os.read(reader, 16)).int & (2**62 - 1)
    os.waitpid(child, 0)
    os.close(reader)
    assert child_bits != parent_bits


@given(st.uuids())
def test_public_ids_round_trip(value: uuid.UUID) -> None:
    text = format_id("txf", value)
    assert text == f"txf_{value.hex}"
    assert parse_id("txf", text) == value


@given(st.text(max_size=60))
def test_the_parser_refuses_anything_malformed_with_invalid_id(text: str) -> None:
    try:
        value = parse_id("txf", text)
    except InvalidId:
        return
    assert format_id("txf", value) == text


@pytest.mark.parametrize(
    "text",
    [
        "acc_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b",  # another kind's prefix
        "txf_0192F3A1C2D37B4E8A9B0C1D2E3F4A5B",  # upper case is not the canonical form
        "txf_0192f3a1c2d37b4e8a9b0c1d2e3f4a5",  # too short
        "txf_0192f3a1-c2d3-7b4e-8a9b-0c1d2e3f",  # dashes
        "",
    ],
)
def test_the_parser_refuses_other_forms(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_id("txf", text)


@given(st.uuids(), st.text(max_size=100))
def test_a_derived_id_is_the_standard_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert derived_id(namespace.bytes, name) == uuid.uuid5(namespace, name)


def test_a_derived_id_matches_the_rfc_9562_appendix_vector() -> None:
    # RFC 9562 A.4: UUIDv5 of "www.example.com" in the DNS namespace.
    derived = derived_id(uuid.NAMESPACE_DNS.bytes, "www.example.com")
    assert derived == uuid.UUID("2ed6657d-e927-568b-95e1-2665a8aea6a2")


POSITION_MAX = 2**48 - 1
LOW_74_BITS = (0xFFF << 64) | ((1 << 62) - 1)


@given(st.integers(0, 2**63 - 1), st.uuids(), st.text(max_size=100))
def test_an_ordered_derived_id_is_a_uuid8_of_the_position_and_the_uuid5(
    position: int, namespace: uuid.UUID, name: str
) -> None:
    made = ordered_derived_id(position, namespace.bytes, name)
    assert made.version == 8 and made.variant == uuid.RFC_4122
    assert made.int >> 80 == position & POSITION_MAX
    assert made.int & LOW_74_BITS == uuid.uuid5(namespace, name).int & LOW_74_BITS
    assert ordered_derived_id(position, namespace.bytes, name) == made


@given(st.lists(st.integers(0, POSITION_MAX), min_size=2, unique=True), st.uuids())
def test_ordered_derived_ids_sort_by_their_position(
    positions: list[int], namespace: uuid.UUID
) -> None:
    made = {position: ordered_derived_id(position, namespace.bytes, "x") for position in positions}
    assert sorted(made, key=made.__getitem__) == sorted(positions)


def test_ordered_derived_ids_of_one_position_differ_by_name() -> None:
    names = [f"event:{n}" for n in range(1000)]
    assert len({ordered_derived_id(42, uuid.NAMESPACE_OID.bytes, n) for n in names}) == 1000

import base64
import json
import uuid
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from billfold.kit import pagination
from billfold.kit.errors import InvariantViolation, ValidationFailed
from billfold.kit.pagination import (
    CURSOR_LENGTH_MAX,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    InvalidCursor,
    Page,
    clamp_page_size,
    decode_cursor,
    encode_cursor,
)


def encode_raw(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def test_public_api_is_pinned() -> None:
    assert set(pagination.__all__) == {
        "CURSOR_LENGTH_MAX",
        "PAGE_SIZE_DEFAULT",
        "PAGE_SIZE_MAX",
        "InvalidCursor",
        "Page",
        "clamp_page_size",
        "decode_cursor",
        "decode_id_cursor",
        "encode_cursor",
    }


def test_invalid_cursor_is_a_400_with_a_stable_code() -> None:
    assert (InvalidCursor.status, InvalidCursor.code) == (400, "invalid_cursor")


def test_page_size_defaults_and_limits() -> None:
    assert (PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX) == (50, 500)
    assert clamp_page_size(None) == PAGE_SIZE_DEFAULT
    assert clamp_page_size(1) == 1
    assert clamp_page_size(PAGE_SIZE_MAX) == PAGE_SIZE_MAX


@pytest.mark.parametrize("limit", [0, -1, PAGE_SIZE_MAX + 1, 10**30, True])
def test_page_size_out_of_range_fails_validation(limit: int) -> None:
    with pytest.raises(ValidationFailed) as raised:
        clamp_page_size(limit)
    assert raised.value.detail == "limit must be an integer from 1 to 500."
    assert raised.value.extensions == {"limit_min": 1, "limit_max": 500}


def test_page_holds_items_and_next_cursor() -> None:
    page = Page(items=[1, 2], next_cursor=encode_cursor([2]))
    assert page.items == [1, 2]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor) == (2,)
    with pytest.raises(FrozenInstanceError):
        page.next_cursor = None  # type: ignore[misc]


def test_cursor_is_url_safe_base64_of_compact_json_without_padding() -> None:
    cursor = encode_cursor([1_700_000_000, "txf_01J"])
    assert "=" not in cursor
    assert base64.urlsafe_b64decode(cursor + "==") == b'[1700000000,"txf_01J"]'
    assert decode_cursor(cursor) == (1_700_000_000, "txf_01J")


SORT_KEY_VALUES = st.one_of(st.integers(min_value=-(2**127), max_value=2**127), st.text())


@given(
    values=st.lists(
        # Small enough that even astral characters (12 escaped bytes each) fit the limit.
        st.one_of(st.integers(min_value=-(2**127), max_value=2**127), st.text(max_size=6)),
        min_size=1,
        max_size=4,
    )
)
@example(values=["ü/+?=", -1, "\x00"])
def test_cursor_round_trips(values: list[int | str]) -> None:
    cursor = encode_cursor(values)
    assert len(cursor) <= CURSOR_LENGTH_MAX
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == tuple(values)


@given(values=st.lists(SORT_KEY_VALUES, min_size=1, max_size=20))
def test_encode_either_round_trips_or_refuses_an_oversized_key(values: list[int | str]) -> None:
    try:
        cursor = encode_cursor(values)
    except InvariantViolation:
        return
    assert decode_cursor(cursor) == tuple(values)


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(InvariantViolation):
        encode_cursor([])
    with pytest.raises(InvariantViolation):
        encode_cursor([True])
    with pytest.raises(InvariantViolation):
        encode_cursor([1.5])  # type: ignore[list-item]
    with pytest.raises(InvariantViolation):
        encode_cursor(["x" * CURSOR_LENGTH_MAX])


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "a",
        "W10",  # []
        encode_raw(b"[1,2]") + "=",  # padding
        encode_raw(b"[1, 2]"),  # not compact
        encode_raw(b'"x"'),  # not a list
        encode_raw(b'{"a":1}'),
        encode_raw(b"[true]"),
        encode_raw(b"[null]"),
        encode_raw(b"[1.5]"),
        encode_raw(b"[1e3]"),
        encode_raw(b"[NaN]"),
        encode_raw(b"[Infinity]"),
        encode_raw(b"[[1]]"),
        encode_raw(b'["\\u0041"]'),  # an alternative spelling of ["A"]
        encode_raw(b"[1"),
        encode_raw(b"\xff\xfe"),
        encode_raw(b"[" + b"[" * 300),
        encode_raw(b"[1]") + " ",
        "W1sxXV0 ",
        encode_cursor(["x" * 300]) + "A" * 200,
    ],
)
def test_decode_refuses_malformed_cursors(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_decode_refuses_cursors_longer_than_the_limit() -> None:
    longest = encode_cursor(["x" * 370])
    assert len(longest) <= CURSOR_LENGTH_MAX
    assert decode_cursor(longest) == ("x" * 370,)
    too_long = encode_raw(json.dumps(["x" * 400]).replace(" ", "").encode())
    assert len(too_long) > CURSOR_LENGTH_MAX
    with pytest.raises(InvalidCursor):
        decode_cursor(too_long)


@given(cursor=st.text())
@example(cursor="")
@example(cursor="W10")
def test_decode_raises_only_invalid_cursor_on_any_text(cursor: str) -> None:
    try:
        values = decode_cursor(cursor)
    except InvalidCursor:
        return
    assert encode_cursor(values) == cursor


@given(payload=st.binary(max_size=300))
def test_decode_raises_only_invalid_cursor_on_any_well_encoded_bytes(payload: bytes) -> None:
    cursor = encode_raw(payload)
    try:
        values = decode_cursor(cursor)
    except InvalidCursor:
        return
    assert encode_cursor(values) == cursor


def test_id_cursors_round_trip_and_refuse_other_cursors() -> None:
    value = uuid.uuid4()
    assert pagination.decode_id_cursor(pagination.encode_cursor([value.hex])) == value
    for other in (pagination.encode_cursor([5]), pagination.encode_cursor(["not-hex"])):
        with pytest.raises(pagination.InvalidCursor):
            pagination.decode_id_cursor(other)

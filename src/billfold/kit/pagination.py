"""Keyset pagination: bounded page sizes and opaque cursors.

A cursor holds the sort key of the last row served (for example ``(created_ns, id)``), so
the next page is ``WHERE (created_ns, id) > cursor`` — stable under inserts, unlike OFFSET.
Cursors are opaque to clients but not secret or signed: a client can decode and forge one,
so whatever a cursor names must still pass the usual tenant and permission filters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from billfold.kit.errors import BadRequest, ValidationFailed, invariant

__all__ = [
    "CURSOR_LENGTH_MAX",
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "InvalidCursor",
    "Page",
    "clamp_page_size",
    "decode_cursor",
    "decode_id_cursor",
    "encode_cursor",
]

PAGE_SIZE_DEFAULT: Final = 50
PAGE_SIZE_MAX: Final = 500
# Bounds the work a client can make us do decoding one, and the URL it rides in.
CURSOR_LENGTH_MAX: Final = 512

_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)

T = TypeVar("T")


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    title = "Invalid cursor"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


def clamp_page_size(limit: int | None) -> int:
    """The page size to use for a client's ``limit``: the default when absent."""
    if limit is None:
        return PAGE_SIZE_DEFAULT
    if type(limit) is not int or not 1 <= limit <= PAGE_SIZE_MAX:
        raise ValidationFailed(
            f"limit must be an integer from 1 to {PAGE_SIZE_MAX}.",
            limit_min=1,
            limit_max=PAGE_SIZE_MAX,
        )
    return limit


def encode_cursor(values: Sequence[int | str]) -> str:
    """Pack a sort key into an opaque, URL-safe cursor."""
    invariant(len(values) > 0, "a cursor needs at least one value")
    for value in values:
        # bool is an int to Python but true/false in JSON, which decode would refuse.
        invariant(type(value) in (int, str), f"cursor values are int or str, got {value!r}")
    # ASCII-only JSON keeps the encoding byte-for-byte reproducible, which decode relies on.
    payload = json.dumps(list(values), separators=(",", ":"), ensure_ascii=True)
    cursor = base64.urlsafe_b64encode(payload.encode("ascii")).rstrip(b"=").decode("ascii")
    invariant(len(cursor) <= CURSOR_LENGTH_MAX, "cursor is longer than CURSOR_LENGTH_MAX")
    return cursor


def decode_cursor(cursor: str) -> tuple[int | str, ...]:
    """Unpack a cursor made by :func:`encode_cursor`, or raise :class:`InvalidCursor`."""
    if (
        not isinstance(cursor, str)
        or len(cursor) > CURSOR_LENGTH_MAX
        or not _CURSOR_TEXT.fullmatch(cursor)
    ):
        raise InvalidCursor("The cursor is malformed.")
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed: object = json.loads(payload.decode("ascii"), parse_constant=_refuse_constant)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursor("The cursor is malformed.") from error
    if not isinstance(parsed, list) or not parsed:
        raise InvalidCursor("The cursor is malformed.")
    values: list[int | str] = []
    for value in parsed:
        if type(value) not in (int, str):
            raise InvalidCursor("The cursor is malformed.")
        values.append(value)
    # Only the exact text encode_cursor produces is accepted, so each position has one
    # cursor and no alternative spelling (padding, spaces, escapes) slips through.
    if encode_cursor(values) != cursor:
        raise InvalidCursor("The cursor is malformed.")
    return tuple(values)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed in a cursor")


def decode_id_cursor(cursor: str) -> uuid.UUID:
    """The id a keyset cursor made by `encode_cursor([some_id.hex])` points after."""
    values = decode_cursor(cursor)
    if len(values) != 1 or not isinstance(values[0], str):
        raise InvalidCursor("The cursor is malformed.")
    try:
        return uuid.UUID(hex=values[0])
    except ValueError as error:
        raise InvalidCursor("The cursor is malformed.") from error

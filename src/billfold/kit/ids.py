"""Identifiers: UUIDv7 inside (time-ordered, index-friendly), prefixed strings outside.

A public id is `<prefix>_<32 lowercase hex digits>`, for example
`txf_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b`. The prefix names the kind of object so a
transfer id can never be passed where an account id is expected.
"""

from __future__ import annotations

import re
import uuid

import uuid6

from billfold.kit.errors import BadRequest

__all__ = ["InvalidId", "format_id", "new_id", "parse_id"]

_PREFIX = re.compile(r"^[a-z]{2,8}$")


class InvalidId(BadRequest):
    code = "invalid_id"
    title = "Malformed identifier"


def new_id() -> uuid.UUID:
    """A new time-ordered UUIDv7."""
    value = uuid6.uuid7()
    return uuid.UUID(bytes=value.bytes)


def format_id(prefix: str, value: uuid.UUID) -> str:
    """The public form of an internal id."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid id prefix {prefix!r}")
    return f"{prefix}_{value.hex}"


def parse_id(prefix: str, text: str) -> uuid.UUID:
    """The internal id behind a public one; refuses another kind's prefix or a bad body."""
    expected = f"{prefix}_"
    if len(text) != len(expected) + 32 or not text.startswith(expected):
        raise InvalidId(f"expected an id of the form {expected}<32 hex digits>")
    body = text[len(expected) :]
    if any(character not in "0123456789abcdef" for character in body):
        raise InvalidId(f"expected an id of the form {expected}<32 hex digits>")
    return uuid.UUID(hex=body)

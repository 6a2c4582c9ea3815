"""The operator session token format: minting, parsing and hashing. Pure functions, no I/O.

A token reads ``bfo_<session id>_<secret>``: ``bfo_`` tells it apart from an API key
(``bf_test_…``, ``bf_live_…``) at a glance and to a secret scanner; the session id is the
row's UUID in 26 lowercase base32 characters, so lookup is by primary key; the secret is
256 random bits. Only SHA-256 of the whole token is stored: as for API keys, a random
256-bit secret cannot be guessed however fast the hash, so a slow one would buy nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid

__all__ = [
    "SESSION_TOKEN_LENGTH_MAX",
    "SESSION_TOKEN_PREFIX",
    "hash_session_token",
    "mint_session_token",
    "parse_session_token",
]

SESSION_TOKEN_PREFIX = "bfo_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES = 32
_SESSION_ID_CHARACTERS = 26
_SECRET_CHARACTERS = 43
_TOKEN = re.compile(
    rf"bfo_([a-z2-7]{{{_SESSION_ID_CHARACTERS}}})_[A-Za-z0-9_-]{{{_SECRET_CHARACTERS}}}",
    re.ASCII,
)
SESSION_TOKEN_LENGTH_MAX = (
    len(SESSION_TOKEN_PREFIX) + _SESSION_ID_CHARACTERS + 1 + _SECRET_CHARACTERS
)
"""Longer input is refused before any parsing work."""


def mint_session_token(session_id: uuid.UUID) -> str:
    """A new token for ``session_id``; shown once to the operator, stored only as a hash."""
    encoded = base64.b32encode(session_id.bytes).decode("ascii").rstrip("=").lower()
    return f"{SESSION_TOKEN_PREFIX}{encoded}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def parse_session_token(text: str) -> uuid.UUID | None:
    """The session id of a well-formed token, or None for anything else."""
    if len(text) > SESSION_TOKEN_LENGTH_MAX:
        return None
    match = _TOKEN.fullmatch(text)
    if match is None:
        return None
    # Other spellings of the same id (the spare 2 bits) decode too; their hash then differs.
    return uuid.UUID(bytes=base64.b32decode(match.group(1).upper() + "======"))


def hash_session_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()

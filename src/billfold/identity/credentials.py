"""The API key format: minting, parsing and hashing. Pure functions, no I/O.

A key reads ``bf_<mode>_<key id>_<secret>``, for example
``bf_test_aghdjeyr3mbrofnsbtfb6prnku_6Jm0…``:

- ``mode`` is ``test`` or ``live``, so a glance (or a secret scanner) tells which it is;
- ``key id`` is the key's UUID in 26 lowercase base32 characters, so the row is found by
  primary key instead of by scanning every hash;
- ``secret`` is ``secrets.token_urlsafe(32)``: 256 random bits in 43 characters.

Only SHA-256 of the whole key is stored. A slow password hash (Argon2, bcrypt) exists to make
guessing low-entropy human passwords expensive; a 256-bit random secret cannot be guessed
however fast the hash, so a fast hash loses nothing and keeps authenticating every request
cheap. Each secret is unique, so there is nothing for a salt to defeat either. Hashing the
whole key, prefix included, also binds the mode and key id: changing either fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from billfold.identity.types import Mode

__all__ = [
    "API_KEY_LENGTH_MAX",
    "ParsedApiKey",
    "hash_api_key",
    "hashes_match",
    "key_prefix",
    "mint_api_key",
    "parse_api_key",
]

SECRET_BYTES = 32
_KEY_ID_CHARACTERS = 26  # 16 bytes of UUID in unpadded base32
_SECRET_CHARACTERS = 43  # token_urlsafe(32): 32 bytes in unpadded base64url
_API_KEY = re.compile(
    rf"bf_(test|live)_([a-z2-7]{{{_KEY_ID_CHARACTERS}}})_([A-Za-z0-9_-]{{{_SECRET_CHARACTERS}}})",
    re.ASCII,
)
API_KEY_LENGTH_MAX = len("bf_test_") + _KEY_ID_CHARACTERS + 1 + _SECRET_CHARACTERS
"""Longer input is refused before any parsing work."""


@dataclass(frozen=True, slots=True)
class ParsedApiKey:
    """The parts of a well-formed key; whether it is genuine is for the stored hash to say."""

    mode: Mode
    api_key_id: uuid.UUID


def key_prefix(*, mode: Mode, api_key_id: uuid.UUID) -> str:
    """The non-secret start of a key (``bf_test_<key id>``), safe to display and log."""
    encoded = base64.b32encode(api_key_id.bytes).decode("ascii").rstrip("=").lower()
    return f"bf_{mode.value}_{encoded}"


def mint_api_key(*, mode: Mode, api_key_id: uuid.UUID) -> str:
    """A new key for ``api_key_id``; the caller shows it once and stores only its hash."""
    return f"{key_prefix(mode=mode, api_key_id=api_key_id)}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_api_key(text: str) -> ParsedApiKey | None:
    """The mode and key id of a well-formed key, or None for anything else."""
    if len(text) > API_KEY_LENGTH_MAX:
        return None
    match = _API_KEY.fullmatch(text)
    if match is None:
        return None
    mode, encoded_id, _secret = match.groups()
    # 26 base32 characters carry 130 bits; the spare 2 bits make other spellings of the
    # same id decode too, but such a key's hash then differs, so it is refused anyway.
    id_bytes = base64.b32decode(encoded_id.upper() + "======")
    return ParsedApiKey(mode=Mode(mode), api_key_id=uuid.UUID(bytes=id_bytes))


def hash_api_key(key: str) -> bytes:
    """SHA-256 of the whole key (see the module docstring for why this hash suffices)."""
    return hashlib.sha256(key.encode("ascii")).digest()


def hashes_match(stored: bytes, presented: bytes) -> bool:
    """Compare in constant time, so response timing reveals nothing about the stored hash."""
    return hmac.compare_digest(stored, presented)

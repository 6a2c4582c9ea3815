"""End users' bearer tokens: minting, parsing and hashing. Pure functions, no I/O.

A token reads ``bfu_<kind>_<secret>``, for example ``bfu_at_6Jm0…``:

- ``bfu_`` tells an end user's token from an API key (``bf_test_…``, ``bf_live_…``) and
  from an operator's (``bfo_…``), at a glance, to a secret scanner and to the parsers: an
  API key is never mistaken for a user token, nor the other way round;
- ``kind`` is ``at`` (access), ``rt`` (refresh), ``mfa`` (second sign-in step) or ``su``
  (step-up), so one kind is never accepted where another is expected;
- ``secret`` is ``secrets.token_urlsafe(32)``: 256 random bits in 43 characters.

Only SHA-256 of the whole token is stored and looked up (through a unique index). As for
API keys, a 256-bit random secret cannot be guessed however fast the hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum

__all__ = [
    "USER_TOKEN_LENGTH_MAX",
    "USER_TOKEN_PREFIX",
    "TokenKind",
    "hash_token",
    "mint_token",
    "token_hash_if_well_formed",
]

USER_TOKEN_PREFIX = "bfu_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES = 32
_SECRET_CHARACTERS = 43


class TokenKind(StrEnum):
    ACCESS = "at"
    REFRESH = "rt"
    MFA = "mfa"
    STEP_UP = "su"


USER_TOKEN_LENGTH_MAX = len(USER_TOKEN_PREFIX) + len("mfa_") + _SECRET_CHARACTERS
"""Longer input is refused before any parsing work."""
_PATTERNS = {
    kind: re.compile(rf"bfu_{kind.value}_[A-Za-z0-9_-]{{{_SECRET_CHARACTERS}}}", re.ASCII)
    for kind in TokenKind
}


def mint_token(kind: TokenKind) -> str:
    """A new token; the caller shows it once and stores only :func:`hash_token` of it."""
    return f"{USER_TOKEN_PREFIX}{kind.value}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def token_hash_if_well_formed(text: str, *, kind: TokenKind) -> bytes | None:
    """The hash to look ``text`` up by, or None when it is no token of ``kind``."""
    if len(text) > USER_TOKEN_LENGTH_MAX or not _PATTERNS[kind].fullmatch(text):
        return None
    return hash_token(text)

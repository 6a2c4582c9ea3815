"""Recovery codes: ten single-use codes, shown once, stored hashed. Pure functions, no I/O.

A code is 16 base32 characters (80 random bits), shown as four groups of four
(`abcd-efgh-ijkl-mnop`); case, dashes and spaces do not matter when it is typed back. 80 bits
cannot be guessed however fast the hash, so SHA-256 suffices; the user id is hashed in too,
so equal codes of two users (vanishingly unlikely anyway) never share a hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid

__all__ = [
    "RECOVERY_CODE_COUNT",
    "RECOVERY_CODE_LENGTH_MAX",
    "hash_recovery_code",
    "mint_recovery_codes",
    "normalize_recovery_code",
]

RECOVERY_CODE_COUNT = 10
_CODE_BYTES = 10
_CODE_CHARACTERS = 16
_GROUP = 4
RECOVERY_CODE_LENGTH_MAX = 64
"""Longer input, even with separators, is refused unparsed."""
_NORMALIZED = re.compile(rf"[a-z2-7]{{{_CODE_CHARACTERS}}}", re.ASCII)
_SEPARATORS = str.maketrans("", "", " -")


def _mint_one() -> str:
    text = base64.b32encode(secrets.token_bytes(_CODE_BYTES)).decode("ascii").lower()
    return "-".join(text[start : start + _GROUP] for start in range(0, _CODE_CHARACTERS, _GROUP))


def mint_recovery_codes() -> list[str]:
    """A new set of codes, in display form."""
    return [_mint_one() for _ in range(RECOVERY_CODE_COUNT)]


def normalize_recovery_code(text: str) -> str | None:
    """The code's canonical form, or None when it cannot be a recovery code."""
    if len(text) > RECOVERY_CODE_LENGTH_MAX:
        return None
    value = text.translate(_SEPARATORS).lower()
    return value if _NORMALIZED.fullmatch(value) else None


def hash_recovery_code(*, user_id: uuid.UUID, normalized: str) -> bytes:
    return hashlib.sha256(
        b"billfold-recovery-code-v1\x00" + user_id.bytes + normalized.encode()
    ).digest()

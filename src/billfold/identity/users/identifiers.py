"""What a user signs in with: an email address, a phone number or a handle. Pure functions.

Each kind has one normal form, so `Ann@Example.COM` and `ann@example.com` are one user and
the unique indexes see one value:

- email: NFKC, trimmed, lowercased; one `@`, a dotted domain, no spaces; at most 254
  characters (64 before the `@`). Lowercasing the local part is not what RFC 5321 says, but
  it is what every wallet user expects, and no mail provider tells such addresses apart.
- phone: E.164, `+` then 8 to 15 digits; spaces, dots, dashes and parentheses are dropped.
- handle: NFKC, lowercased, a letter then 2 to 29 of letters, digits, `_` and `.`.

At sign-in the kind follows from the shape: an `@` means email, a leading `+` phone, and
anything else a handle (which can contain neither).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from billfold.identity.users.errors import InvalidIdentifier
from billfold.identity.users.models import EMAIL_LENGTH_MAX, HANDLE_LENGTH_MAX

__all__ = [
    "IDENTIFIER_LENGTH_MAX",
    "Identifier",
    "IdentifierKind",
    "normalize_email",
    "normalize_handle",
    "normalize_phone",
    "parse_login_identifier",
]

IDENTIFIER_LENGTH_MAX = EMAIL_LENGTH_MAX
"""The longest identifier of any kind; longer input is refused before any work."""
_EMAIL_LOCAL_LENGTH_MAX = 64
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_PHONE = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
_PHONE_SEPARATORS = str.maketrans("", "", " .-()")
_HANDLE = re.compile(rf"[a-z][a-z0-9_.]{{2,{HANDLE_LENGTH_MAX - 1}}}", re.ASCII)


class IdentifierKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    HANDLE = "handle"


@dataclass(frozen=True, slots=True)
class Identifier:
    """A normalized identifier and its kind (which column it lives in)."""

    kind: IdentifierKind
    value: str


def normalize_email(text: str) -> str:
    value = unicodedata.normalize("NFKC", text).strip().lower()
    local, _, _domain = value.partition("@")
    if (
        len(value) > EMAIL_LENGTH_MAX
        or len(local) > _EMAIL_LOCAL_LENGTH_MAX
        or not value.isprintable()
        or not _EMAIL.fullmatch(value)
    ):
        raise InvalidIdentifier("An email address looks like name@example.com.", field="email")
    return value


def normalize_phone(text: str) -> str:
    value = text.strip().translate(_PHONE_SEPARATORS)
    if not _PHONE.fullmatch(value):
        raise InvalidIdentifier(
            "A phone number is in E.164 form: + then 8 to 15 digits.", field="phone"
        )
    return value


def normalize_handle(text: str) -> str:
    value = unicodedata.normalize("NFKC", text).strip().lower()
    if not _HANDLE.fullmatch(value):
        raise InvalidIdentifier(
            f"A handle is a letter then 2 to {HANDLE_LENGTH_MAX - 1} letters, digits, _ or .",
            field="handle",
        )
    return value


def parse_login_identifier(text: str) -> Identifier | None:
    """The identifier a sign-in names, or None when it cannot be one (which the caller
    answers exactly like an unknown identifier)."""
    if len(text) > IDENTIFIER_LENGTH_MAX:
        return None
    stripped = text.strip()
    try:
        if "@" in stripped:
            return Identifier(IdentifierKind.EMAIL, normalize_email(stripped))
        if stripped.startswith("+"):
            return Identifier(IdentifierKind.PHONE, normalize_phone(stripped))
        return Identifier(IdentifierKind.HANDLE, normalize_handle(stripped))
    except InvalidIdentifier:
        return None

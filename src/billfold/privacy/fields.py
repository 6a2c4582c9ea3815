"""The personal fields the vault holds: validation, and the normalization blind indexes use
(so that `Ann@Example.com` finds `ann@example.com`)."""

from __future__ import annotations

import enum
import re
import unicodedata

from billfold.privacy.errors import InvalidPiiValue

__all__ = ["SEARCHABLE_FIELDS", "PiiField", "normalize", "validate"]


class PiiField(enum.StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    NATIONAL_ID = "national_id"
    ADDRESS = "address"
    BANK_ACCOUNT = "bank_account"


LENGTH_MAX = {
    PiiField.NAME: 200,
    PiiField.EMAIL: 254,
    PiiField.PHONE: 16,
    PiiField.NATIONAL_ID: 32,
    PiiField.ADDRESS: 1000,
    PiiField.BANK_ACCOUNT: 34,
}
SEARCHABLE_FIELDS = frozenset(
    {PiiField.NAME, PiiField.EMAIL, PiiField.PHONE, PiiField.NATIONAL_ID, PiiField.BANK_ACCOUNT}
)
"""Addresses are free text: no exact match is meaningful, so they have no blind index."""
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IDENTIFIER = re.compile(r"[0-9A-Z]{4,34}", re.ASCII)
_IDENTIFIERS = (PiiField.NATIONAL_ID, PiiField.BANK_ACCOUNT)


def _compact(value: str) -> str:
    return re.sub(r"[\s\-./]", "", value)


def validate(field: PiiField, value: str) -> str:
    """The value as stored (NFC, trimmed), or InvalidPiiValue naming the field.

    An identifier's length counts its letters and digits, not the spaces and dashes it is
    written with (an IBAN of 34 is printed in 42 characters). Only an address has lines;
    an email address has no invisible characters (zero-width spaces, bidi controls), which
    would make it look like another and escape a search for what it shows."""
    text = unicodedata.normalize("NFC", value).strip()
    if field is PiiField.PHONE:
        text = _compact(text)
    counted = _compact(text) if field in _IDENTIFIERS else text
    if not counted or len(counted) > LENGTH_MAX[field]:
        raise InvalidPiiValue(
            f"{field.value} must be 1 to {LENGTH_MAX[field]} characters.", field=field.value
        )
    line_break = "\n" if field is PiiField.ADDRESS else ""
    if any(
        unicodedata.category(character) == "Cc" for character in text if character != line_break
    ):
        raise InvalidPiiValue(f"{field.value} has control characters.", field=field.value)
    if field is PiiField.EMAIL and any(
        unicodedata.category(character) == "Cf" for character in text
    ):
        raise InvalidPiiValue("email has invisible characters.", field=field.value)
    if field is PiiField.EMAIL and not _EMAIL.fullmatch(text):
        raise InvalidPiiValue("email is not an address.", field=field.value)
    if field is PiiField.PHONE and not _E164.fullmatch(text):
        raise InvalidPiiValue("phone must be E.164: + and 7 to 15 digits.", field=field.value)
    if field in _IDENTIFIERS and not _IDENTIFIER.fullmatch(counted.upper()):
        raise InvalidPiiValue(f"{field.value} is 4 to 34 letters and digits.", field=field.value)
    return text


def normalize(field: PiiField, value: str) -> str:
    """The form a blind index hashes: case, spacing and separators do not matter."""
    text = unicodedata.normalize("NFKC", value).strip()
    if field in (PiiField.PHONE, PiiField.NATIONAL_ID, PiiField.BANK_ACCOUNT):
        return _compact(text).upper()
    return " ".join(text.casefold().split())

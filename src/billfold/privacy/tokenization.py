"""Format-preserving surrogates for card numbers (PAN) and bank account numbers.

A PAN token has the PAN's length, starts with ``9`` (no card network issues under it, so a
token is never mistaken for a card), keeps the last four digits and passes the Luhn check
(one digit before the last four is chosen for that). A bank account token is ``TK`` and
random digits, at least 16 characters long, ending with the account's last four.
"""

from __future__ import annotations

import re
import secrets

from billfold.privacy.errors import InvalidAccountNumber, InvalidCardNumber
from billfold.privacy.masking import luhn_valid

__all__ = [
    "BANK_ACCOUNT_TOKEN_LENGTH_MIN",
    "make_bank_account_token",
    "make_pan_token",
    "normalize_bank_account",
    "normalize_pan",
]

BANK_ACCOUNT_TOKEN_LENGTH_MIN = 16
_SEPARATORS = re.compile(r"[\s\-]")
_ACCOUNT = re.compile(r"[0-9A-Z]{8,34}", re.ASCII)
_PAN = re.compile(r"[0-9]{12,19}", re.ASCII)


def normalize_pan(value: str) -> str:
    digits = _SEPARATORS.sub("", value)
    if not _PAN.fullmatch(digits) or not luhn_valid(digits):
        raise InvalidCardNumber()
    return digits


def normalize_bank_account(value: str) -> str:
    compact = _SEPARATORS.sub("", value).upper()
    if not _ACCOUNT.fullmatch(compact):
        raise InvalidAccountNumber()
    return compact


def _random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def make_pan_token(pan: str) -> str:
    """`9`, random digits, one Luhn-fixing digit, then the PAN's last four."""
    body = "9" + _random_digits(len(pan) - 6)
    for check in "0123456789":
        candidate = body + check + pan[-4:]
        if luhn_valid(candidate):
            return candidate
    raise AssertionError("one of ten digits always satisfies the Luhn check")


def make_bank_account_token(account: str) -> str:
    length = max(len(account), BANK_ACCOUNT_TOKEN_LENGTH_MIN)
    return "TK" + _random_digits(length - 6) + account[-4:]

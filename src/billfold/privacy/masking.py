"""Masking: how personal values look wherever full values are not needed (API responses
without the ``pii:read`` scope, logs), and a scanner for values that escaped it.

=============  =========================  ======================
field          value                      masked
=============  =========================  ======================
phone          ``+8613812345678``         ``+86 138****5678``
pan            ``4242424242424242``       ``**** 4242``
email          ``zhang@example.com``      ``z***@example.com``
bank_account   ``DE89370400440532013000`` ``**** 3000``
national_id    ``110101199003074578``     ``**** 4578``
name           ``Zhang Wei``              ``Z**** W**``
address        ``1 Main Street``          ``1 M***``
=============  =========================  ======================

``mask_pii_processor`` is a structlog processor masking emails, phone numbers and card
numbers (Luhn-valid) anywhere in a log event; ``find_unmasked_pii`` reports what a text
still shows in the clear.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

__all__ = [
    "find_unmasked_pii",
    "luhn_valid",
    "mask_address",
    "mask_email",
    "mask_name",
    "mask_pan",
    "mask_phone",
    "mask_pii_processor",
    "mask_tail",
    "mask_text",
    "mask_value",
]

_STARS = "****"
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_PHONE = re.compile(r"(?<![\w+])\+[1-9](?:[ ()-]{0,2}\d){6,14}(?![\d])")
"""An international number, its digits grouped by spaces, dashes or parentheses
(`+1 (415) 555-2671`, written so in the United States, was left in the clear)."""
_CARD = re.compile(r"(?<![\d-])(?!(?<=\*{4} )\d{4}(?!\d))\d(?:[ -]?\d){12,}(?![ -]?\d)")
"""A run of at least 13 digits, single spaces or dashes between them: where `_cards_in`
looks for card numbers. Never from the four digits a masked card shows (`**** 4242 …`),
so masking twice changes nothing."""
_CARD_DIGITS_MIN = 13
"""The fewest characters a `_CARD` match has (its digits, without separators)."""
_CARD_DIGITS_MAX = 19
_DIGIT_GROUP = re.compile(r"\d+")
_DEPTH_MAX = 8
_TEXT_LENGTH_MAX = 65_536
"""Longer strings in a log event are truncated before scanning: a bound on the work."""

# ITU-T E.164 country calling codes of one and two digits; every other one has three.
_ONE_DIGIT_CODES = frozenset({"1", "7"})
_TWO_DIGIT_CODES = frozenset(
    str(code)
    for code in (
        *(20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49),
        *(51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66),
        *(81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98),
    )
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812 over a string of digits."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for index, character in enumerate(reversed(digits)):
        value = int(character)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _country_code_length(digits: str) -> int:
    if digits[:1] in _ONE_DIGIT_CODES:
        return 1
    if digits[:2] in _TWO_DIGIT_CODES:
        return 2
    return 3


def mask_phone(phone: str) -> str:
    """`+8613812345678` → `+86 138****5678`: the country code, the first three and last
    four digits of the national number."""
    digits = "".join(character for character in phone if character.isdigit())
    if not phone.strip().startswith("+") or len(digits) < 8:
        return _STARS + digits[-2:] if len(digits) > 4 else _STARS
    code_length = _country_code_length(digits)
    code, national = digits[:code_length], digits[code_length:]
    if len(national) < 8:
        return f"+{code} {_STARS}{national[-4:]}"
    return f"+{code} {national[:3]}{_STARS}{national[-4:]}"


def mask_tail(value: str) -> str:
    """`4242424242424242` → `**** 4242`: card, bank account and national id numbers."""
    compact = "".join(character for character in value if character.isalnum())
    if len(compact) <= 6:
        return _STARS
    return f"{_STARS} {compact[-4:]}"


mask_pan = mask_tail


def mask_email(email: str) -> str:
    """`zhang@example.com` → `z***@example.com`."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_name(name: str) -> str:
    """`Zhang Wei` → `Z**** W**`; `张伟` → `张*`: the first letter of each word."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())


def mask_address(address: str) -> str:
    """`1 Main Street` → `1 M***`: enough to recognize, not to locate."""
    return address.strip()[:3] + "***" if address.strip() else "***"


_BY_FIELD = {
    "email": mask_email,
    "phone": mask_phone,
    "name": mask_name,
    "address": mask_address,
    "national_id": mask_tail,
    "bank_account": mask_tail,
    "pan": mask_tail,
}


def mask_value(field: str, value: str) -> str:
    """The masked form of a value of `field` (anything unknown is fully hidden)."""
    masker = _BY_FIELD.get(field)
    return masker(value) if masker is not None else "***"


def _card_end(run: str, groups: list[re.Match[str]], first: int) -> int | None:
    """The last digit group of the longest card number starting at group `first`."""
    if run[groups[first].start()] not in "23456":
        return None
    end, digits = None, ""
    for index in range(first, len(groups)):
        digits += groups[index].group(0)
        if len(digits) > _CARD_DIGITS_MAX:
            break
        if len(digits) >= _CARD_DIGITS_MIN and luhn_valid(digits):
            end = index
    return end


def _cards_in(run: str) -> list[tuple[int, int]]:
    """Where the Luhn-valid card numbers of a `_CARD` run are, left to right: whole digit
    groups, so a card followed by more digits (an expiry date, an amount) is found too."""
    groups = list(_DIGIT_GROUP.finditer(run))
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(groups):
        end = _card_end(run, groups, first)
        if end is None:
            first += 1
            continue
        spans.append((groups[first].start(), groups[end].end()))
        first = end + 1
    return spans


def _mask_card(match: re.Match[str]) -> str:
    run, kept, parts = match.group(0), 0, []
    for start, end in _cards_in(run):
        parts += [run[kept:start], mask_tail(run[start:end])]
        kept = end
    return "".join(parts) + run[kept:]


def mask_text(text: str) -> str:
    """Every email, international phone number and Luhn-valid card number in `text`,
    masked; the rest unchanged.

    A pattern runs only on a text that could hold a match: an email has an `@`, a phone
    number a `+`, a card number at least 13 digits. Most strings of a log line are ids,
    paths and numbers, and three regular expressions over each were a quarter of the CPU
    of every access-log line."""
    if "@" in text:
        text = _EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    if len(text) >= _CARD_DIGITS_MIN:
        text = _CARD.sub(_mask_card, text)
    if "+" in text:
        text = _PHONE.sub(lambda match: mask_phone(match.group(0)), text)
    return text


def find_unmasked_pii(text: str) -> list[str]:
    """The emails, phone numbers and Luhn-valid card numbers `text` shows in the clear."""
    found = [match.group(0) for match in _EMAIL.finditer(text)]
    found += [
        match.group(0)[start:end]
        for match in _CARD.finditer(text)
        for start, end in _cards_in(match.group(0))
    ]
    found += [match.group(0) for match in _PHONE.finditer(text)]
    return found


def _masked(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask_text(value[:_TEXT_LENGTH_MAX])
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _DEPTH_MAX and isinstance(value, dict):
        return {
            _masked(key, depth) if isinstance(key, str) else key: _masked(item, depth + 1)
            for key, item in value.items()
        }
    if depth < _DEPTH_MAX and isinstance(value, list | tuple | set | frozenset):
        return [_masked(item, depth + 1) for item in value]
    # Anything else (an exception, bytes, an object, what lies deeper than the bound)
    # reaches the line as its repr, the JSON renderer's fallback: that text is masked.
    return mask_text(repr(value)[:_TEXT_LENGTH_MAX])


def mask_pii_processor(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask PII patterns in every string of the event, its keys and
    the text of any other value. `exc_info` is left for the traceback renderer, whose
    output the processors see afterwards (`billfold.kit.http.logging`)."""
    for key, value in list(event_dict.items()):
        if key != "exc_info":
            event_dict[key] = _masked(value, 0)
    return event_dict

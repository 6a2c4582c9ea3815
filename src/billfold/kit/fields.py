"""Field types for JSON request bodies that hold what the OpenAPI document says they hold.

Pydantic reads a request body leniently: `true` is 1, `"5"` is 5. The document says such a
field is an `integer`, and to a JSON Schema neither `true` nor `"5"` is one, so a client
built from the document, or a typo, would be executed as something it never said.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["JsonInt", "decimal_pattern"]


def _integer_only(value: object) -> object:
    """Refuses JSON's `true` and `false` and any string; numbers go on to pydantic's own
    check (which takes `5.0`, a JSON Schema integer, and refuses `5.5`)."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_integer_only)]
"""An `integer` in the document, and only a JSON number in the body."""


def decimal_pattern(maximum: int, *, minimum: Literal[0, 1]) -> str:
    """A regular expression (unanchored, ASCII) for exactly the decimal integers from
    `minimum` to `maximum`, written without leading zeros or signs: so that an amount sent
    as a digit string is documented as precisely as one sent as a JSON number."""
    if maximum < 1:
        raise ValueError("maximum must be at least 1")
    top = str(maximum)
    length = len(top)
    options = ["0"] if minimum == 0 else []
    if length > 1:
        options.append(f"[1-9][0-9]{{0,{length - 2}}}")  # every shorter number
    for index, digit in enumerate(top):  # as long as `top`, first smaller at `index`
        lowest, highest = (1 if index == 0 else 0), int(digit) - 1
        if highest >= lowest:
            smaller = str(lowest) if lowest == highest else f"[{lowest}-{highest}]"
            rest = length - index - 1
            options.append(top[:index] + smaller + (f"[0-9]{{{rest}}}" if rest else ""))
    options.append(top)
    return "(?:" + "|".join(options) + ")"

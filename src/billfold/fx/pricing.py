"""Pure FX pricing: the locked rate and exact amounts, always rounded in the platform's favour.

- The **mid rate** is the ECB cross rate through the euro (units of buy per unit of sell).
- The **locked rate** is `mid * (10 000 - spread_bps) / 10 000`, rounded *down* to
  `RATE_SIGNIFICANT_DIGITS` significant digits: the customer never gets a better rate than
  the spread allows. It is stored with the quote, and the amounts come from it exactly.
- Selling a fixed amount: `buy = floor(sell * rate * 10^(e_buy - e_sell))` minor units.
- Buying a fixed amount: `sell = ceil(buy / rate * 10^(e_sell - e_buy))` minor units.

`e_*` are the ISO 4217 exponents (`billfold.kit.money`): 2 for EUR, 0 for JPY, 3 for KWD.
Amounts are integers and rates `Decimal`/`Fraction` throughout; nothing is ever a float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

from billfold.kit.errors import ValidationFailed, invariant

__all__ = [
    "BPS_DENOMINATOR",
    "QUOTE_AMOUNT_MAX",
    "RATE_SIGNIFICANT_DIGITS",
    "SPREAD_BPS_MAX",
    "FxAmountTooSmall",
    "Priced",
    "buy_for_sell",
    "lock_rate",
    "price",
    "round_down_significant",
    "sell_for_buy",
]

BPS_DENOMINATOR: Final = 10_000
SPREAD_BPS_MAX: Final = 2_000
"""20%: anything above is a mistake, not a spread."""
RATE_SIGNIFICANT_DIGITS: Final = 12
QUOTE_AMOUNT_MAX: Final = 10**18 - 1
"""Largest sell or buy amount of one quote, in minor units (fits a BIGINT): the 18 digits
a request may give, so a computed leg is held to what a caller could have asked for."""
_DIGITS_MAX: Final = 400


class FxAmountTooSmall(ValidationFailed):
    code = "fx_amount_too_small"
    title = "Amount too small to convert"


class FxAmountTooLarge(ValidationFailed):
    code = "fx_amount_too_large"
    title = "Amount too large to convert"


def round_down_significant(value: Fraction, digits: int) -> Decimal:
    """The largest Decimal with at most `digits` significant digits that is <= `value` > 0."""
    invariant(value > 0, "only positive rates are rounded")
    invariant(1 <= digits <= 34, "significant digits are bounded")
    # Find k with 10^(digits-1) <= value * 10^k < 10^digits.
    k = digits - 1 - (len(str(value.numerator)) - len(str(value.denominator)))
    for _ in range(4):  # the estimate is off by at most one either way
        scaled = value * Fraction(10) ** k
        if scaled < 10 ** (digits - 1):
            k += 1
        elif scaled >= 10**digits:
            k -= 1
        else:
            break
    invariant(abs(k) <= _DIGITS_MAX, "rates stay within sane magnitudes")
    integer = math.floor(value * Fraction(10) ** k)
    invariant(10 ** (digits - 1) <= integer < 10**digits, "rounded to the digits asked")
    return Decimal(integer).scaleb(-k)


def lock_rate(mid: Fraction, *, spread_bps: int) -> Decimal:
    """The customer's rate: the mid rate less the spread, rounded down."""
    invariant(0 <= spread_bps <= SPREAD_BPS_MAX, "spread within bounds")
    return round_down_significant(
        mid * (BPS_DENOMINATOR - spread_bps) / BPS_DENOMINATOR, RATE_SIGNIFICANT_DIGITS
    )


def _scale(sell_exponent: int, buy_exponent: int) -> Fraction:
    return Fraction(10) ** (buy_exponent - sell_exponent)


def buy_for_sell(sell_minor: int, rate: Decimal, *, sell_exponent: int, buy_exponent: int) -> int:
    """Minor units of buy currency the customer receives for `sell_minor` (rounded down)."""
    exact = Fraction(sell_minor) * Fraction(rate) * _scale(sell_exponent, buy_exponent)
    return math.floor(exact)


def sell_for_buy(buy_minor: int, rate: Decimal, *, sell_exponent: int, buy_exponent: int) -> int:
    """Minor units of sell currency the customer pays to receive `buy_minor` (rounded up)."""
    exact = Fraction(buy_minor) / Fraction(rate) / _scale(sell_exponent, buy_exponent)
    return math.ceil(exact)


@dataclass(frozen=True, slots=True)
class Priced:
    rate: Decimal
    sell_minor: int
    buy_minor: int


def price(
    *,
    mid: Fraction,
    spread_bps: int,
    fixed: Literal["sell", "buy"],
    amount_minor: int,
    sell_exponent: int,
    buy_exponent: int,
) -> Priced:
    """Both amounts of a quote, given one of them."""
    if not 1 <= amount_minor <= QUOTE_AMOUNT_MAX:
        raise FxAmountTooLarge(f"An amount is 1 to {QUOTE_AMOUNT_MAX} minor units.")
    rate = lock_rate(mid, spread_bps=spread_bps)
    exponents = {"sell_exponent": sell_exponent, "buy_exponent": buy_exponent}
    if fixed == "sell":
        sell_minor, buy_minor = amount_minor, buy_for_sell(amount_minor, rate, **exponents)
    else:
        sell_minor, buy_minor = sell_for_buy(amount_minor, rate, **exponents), amount_minor
    if buy_minor < 1 or sell_minor < 1:
        raise FxAmountTooSmall("The amount converts to less than one minor unit.")
    if sell_minor > QUOTE_AMOUNT_MAX or buy_minor > QUOTE_AMOUNT_MAX:
        raise FxAmountTooLarge(f"An amount is 1 to {QUOTE_AMOUNT_MAX} minor units.")
    # The platform never gives more than the locked rate allows.
    invariant(
        Fraction(buy_minor)
        <= Fraction(sell_minor) * Fraction(rate) * _scale(sell_exponent, buy_exponent),
        "the customer receives at most the locked rate",
    )
    return Priced(rate=rate, sell_minor=sell_minor, buy_minor=buy_minor)

"""FX pricing: exact examples and properties — the platform never loses to rounding, and a
round trip costs the spread twice, give or take a minor unit."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billfold.fx.pricing import (
    BPS_DENOMINATOR,
    QUOTE_AMOUNT_MAX,
    RATE_SIGNIFICANT_DIGITS,
    SPREAD_BPS_MAX,
    FxAmountTooLarge,
    FxAmountTooSmall,
    buy_for_sell,
    lock_rate,
    price,
    round_down_significant,
)

USD_PER_EUR = Fraction("1.1050")
JPY_PER_EUR = Fraction("156.33")


def test_selling_100_eur_for_usd_at_a_50_bps_spread() -> None:
    priced = price(
        mid=USD_PER_EUR,
        spread_bps=50,
        fixed="sell",
        amount_minor=10_000,
        sell_exponent=2,
        buy_exponent=2,
    )
    # 1.1050 * 0.995 = 1.099475 exactly; 100.00 EUR -> 109.9475 USD, rounded down.
    assert priced.rate == Decimal("1.09947500000")
    assert (priced.sell_minor, priced.buy_minor) == (10_000, 10_994)


def test_buying_an_exact_amount_rounds_the_sell_side_up_across_exponents() -> None:
    usd_to_jpy = JPY_PER_EUR / USD_PER_EUR
    priced = price(
        mid=usd_to_jpy,
        spread_bps=50,
        fixed="buy",
        amount_minor=10_000,
        sell_exponent=2,
        buy_exponent=0,
    )
    assert priced.buy_minor == 10_000  # exactly the yen asked for
    exact_sell = Fraction(10_000) / Fraction(priced.rate) * 100
    assert priced.sell_minor == math.ceil(exact_sell)
    assert buy_for_sell(priced.sell_minor, priced.rate, sell_exponent=2, buy_exponent=0) >= 10_000


def test_a_computed_leg_is_held_to_what_a_request_could_ask_for() -> None:
    """A request's amount has at most 18 digits; the other leg, computed, may not reach
    10^18 either (it could, by one, before)."""

    def doubled(sell_minor: int) -> int:
        quote = price(
            mid=Fraction(2),
            spread_bps=0,
            fixed="sell",
            amount_minor=sell_minor,
            sell_exponent=2,
            buy_exponent=2,
        )
        return quote.buy_minor

    assert doubled(5 * 10**17 - 1) == 10**18 - 2
    with pytest.raises(FxAmountTooLarge):
        doubled(5 * 10**17)


def test_amounts_that_round_to_nothing_or_exceed_the_bound_are_refused() -> None:
    with pytest.raises(FxAmountTooSmall):
        price(
            mid=Fraction(1, 1000),
            spread_bps=0,
            fixed="sell",
            amount_minor=1,
            sell_exponent=2,
            buy_exponent=2,
        )
    for amount in (0, QUOTE_AMOUNT_MAX + 1):
        with pytest.raises(FxAmountTooLarge):
            price(
                mid=USD_PER_EUR,
                spread_bps=0,
                fixed="sell",
                amount_minor=amount,
                sell_exponent=2,
                buy_exponent=2,
            )


def test_the_rate_is_rounded_down_to_twelve_significant_digits() -> None:
    assert round_down_significant(Fraction(2, 3), 12) == Decimal("0.666666666666")
    assert round_down_significant(Fraction(200, 3), 12) == Decimal("66.6666666666")
    assert round_down_significant(Fraction(1), 12) == Decimal("1.00000000000")
    assert round_down_significant(Fraction(10**15) + Fraction(1, 3), 12) == Decimal(
        "1.00000000000E+15"
    )


rates = st.fractions(min_value=Fraction(1, 10**4), max_value=Fraction(10**5)).filter(
    lambda r: r > 0
)
spreads = st.integers(min_value=0, max_value=SPREAD_BPS_MAX)
exponents = st.sampled_from([0, 2, 3])
amounts = st.integers(min_value=1, max_value=10**15)


@settings(deadline=None)
@given(value=st.fractions(min_value=Fraction(1, 10**30), max_value=Fraction(10**30)))
def test_round_down_significant_is_below_and_within_one_unit_in_the_last_place(
    value: Fraction,
) -> None:
    assume(value > 0)
    rounded = Fraction(round_down_significant(value, RATE_SIGNIFICANT_DIGITS))
    assert rounded <= value
    assert value - rounded < value / 10 ** (RATE_SIGNIFICANT_DIGITS - 1)


@settings(deadline=None)
@given(
    mid=rates,
    spread=spreads,
    sell_exponent=exponents,
    buy_exponent=exponents,
    amount=amounts,
    fixed=st.sampled_from(["sell", "buy"]),
)
def test_the_platform_never_loses_to_rounding(
    mid: Fraction, spread: int, sell_exponent: int, buy_exponent: int, amount: int, fixed: str
) -> None:
    try:
        priced = price(
            mid=mid,
            spread_bps=spread,
            fixed=fixed,  # type: ignore[arg-type]
            amount_minor=amount,
            sell_exponent=sell_exponent,
            buy_exponent=buy_exponent,
        )
    except (FxAmountTooSmall, FxAmountTooLarge):
        return
    scale = Fraction(10) ** (buy_exponent - sell_exponent)
    fair = mid * (BPS_DENOMINATOR - spread) / BPS_DENOMINATOR
    assert priced.rate <= fair  # the locked rate never beats the spread
    # The customer receives at most what the sold amount is worth at the locked rate...
    assert Fraction(priced.buy_minor) <= priced.sell_minor * Fraction(priced.rate) * scale
    # ...and rounding costs the customer less than one minor unit on the computed side.
    if fixed == "sell":
        assert priced.sell_minor == amount
        assert priced.sell_minor * Fraction(priced.rate) * scale - priced.buy_minor < 1
    else:
        assert priced.buy_minor == amount
        assert priced.sell_minor - priced.buy_minor / Fraction(priced.rate) / scale < 1


@settings(deadline=None)
@given(
    mid=rates,
    spread=spreads,
    amount=st.integers(min_value=10**4, max_value=10**15),
    exponents=st.tuples(exponents, exponents),
)
def test_a_round_trip_costs_the_spread_twice_within_a_minor_unit(
    mid: Fraction, spread: int, amount: int, exponents: tuple[int, int]
) -> None:
    sell_exponent, buy_exponent = exponents
    try:
        there = price(
            mid=mid,
            spread_bps=spread,
            fixed="sell",
            amount_minor=amount,
            sell_exponent=sell_exponent,
            buy_exponent=buy_exponent,
        )
        back = price(
            mid=1 / mid,
            spread_bps=spread,
            fixed="sell",
            amount_minor=there.buy_minor,
            sell_exponent=buy_exponent,
            buy_exponent=sell_exponent,
        )
    except (FxAmountTooSmall, FxAmountTooLarge):
        return
    assert back.buy_minor <= amount  # never a profit for the customer
    kept = Fraction(BPS_DENOMINATOR - spread, BPS_DENOMINATOR) ** 2
    # Expected: amount * kept; lost beyond it only to rounding: one buy-side unit on the way
    # there (worth 1/(rate*scale) sell units), one on the way back, and 2 x 12-digit rate cuts.
    there_unit = Fraction(10) ** (sell_exponent - buy_exponent) / mid
    tolerance = 1 + there_unit + amount * Fraction(2, 10 ** (RATE_SIGNIFICANT_DIGITS - 1))
    assert amount * kept - back.buy_minor <= tolerance


@settings(deadline=None)
@given(mid=rates, spread=spreads)
def test_a_wider_spread_never_gives_a_better_rate(mid: Fraction, spread: int) -> None:
    assume(spread < SPREAD_BPS_MAX)
    assert lock_rate(mid, spread_bps=spread + 1) <= lock_rate(mid, spread_bps=spread)

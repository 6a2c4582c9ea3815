"""`billfold.kit.fields`: the digit-string pattern holds exactly the range it names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.kit.fields import decimal_pattern

MAXIMA = [1, 9, 10, 99, 100, 101, 2**31 - 1, 2**62, 2**63 - 1, 2**127 - 1, 10**20]


@pytest.mark.parametrize("maximum", MAXIMA)
@pytest.mark.parametrize("minimum", [0, 1])
def test_the_bounds_and_their_neighbours(maximum: int, minimum: int) -> None:
    pattern = re.compile(decimal_pattern(maximum, minimum=minimum), re.ASCII)
    for value in {0, 1, 2, 9, 10, maximum - 1, maximum, maximum + 1, 10 * maximum}:
        assert bool(pattern.fullmatch(str(value))) is (minimum <= value <= maximum), value
    for text in ("", "-1", "+1", "01", "00", " 1", "1 ", "1.0", "1e3", "1_0", "\u0661"):
        assert pattern.fullmatch(text) is None, text


@given(
    st.sampled_from(MAXIMA),
    st.sampled_from([0, 1]),
    st.integers(min_value=-10, max_value=10**40),
    st.integers(min_value=0, max_value=2),
)
def test_a_number_matches_exactly_when_in_range_and_written_plainly(
    maximum: int, minimum: int, value: int, zeros: int
) -> None:
    pattern = re.compile(decimal_pattern(maximum, minimum=minimum), re.ASCII)
    text = "0" * zeros + str(value)
    expected = minimum <= value <= maximum and (zeros == 0 or text == "0")
    assert bool(pattern.fullmatch(text)) is expected


def test_a_maximum_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        decimal_pattern(0, minimum=0)

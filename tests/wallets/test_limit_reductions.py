"""Risk reductions of spending limits (pure): a reduction only lowers a limit, to its
fraction of the tier's or override's figure, and no reduction leaves the limit whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from billfold.wallets.limits import BPS_WHOLE, check_limits, effective_limits, reduced

_LIMITS = st.integers(min_value=0, max_value=2**63 - 1)
_BPS = st.integers(min_value=0, max_value=BPS_WHOLE)


@given(limit=_LIMITS, bps=_BPS)
def test_a_reduction_never_raises_a_limit_and_keeps_its_fraction(limit: int, bps: int) -> None:
    lowered = reduced(limit, bps)
    assert 0 <= lowered <= limit
    assert lowered == limit * bps // BPS_WHOLE
    assert reduced(limit, None) == limit
    assert reduced(limit, BPS_WHOLE) == limit


@given(tier=st.integers(0, 3), override=st.integers(1, 10**12), bps=_BPS)
def test_the_reduction_applies_to_the_override_when_it_is_higher(
    tier: int, override: int, bps: int
) -> None:
    base = effective_limits(tier=tier, exponent=2, overrides={"daily": override})
    lowered = effective_limits(
        tier=tier, exponent=2, overrides={"daily": override}, reduction_bps=bps
    )
    for whole, cut in zip(base, lowered, strict=True):
        assert cut.limit_minor == whole.limit_minor * bps // BPS_WHOLE
        assert cut.reduction_bps == bps
        if cut.limit_minor < whole.limit_minor:
            assert cut.source == "risk_reduction"
        else:
            assert cut.source == whole.source


def test_a_reduced_limit_is_the_one_checked() -> None:
    # Tier 1 in USD: 1,000.00 per transfer; a tenth of it is 100.00.
    common = {"tier": 1, "exponent": 2, "daily_used_minor": 0, "monthly_used_minor": 0}
    assert check_limits(amount_minor=50_000, **common) is None
    breach = check_limits(amount_minor=50_000, reduction_bps=1_000, **common)
    assert breach is not None and breach.window == "per_transaction"
    assert breach.limit_minor == 10_000
    assert check_limits(amount_minor=10_000, reduction_bps=1_000, **common) is None
    nothing = check_limits(amount_minor=1, reduction_bps=0, **common)
    assert nothing is not None and nothing.limit_minor == 0

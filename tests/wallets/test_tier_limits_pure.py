"""The effective limit with a tenant's own tier figures (pure): per window,
``reduced(max(tier figure, override), reduction_bps)`` where the tier figure is the
tenant's when it set some for the tier and currency, else the default table's scaled; a
tenant that set nothing sees exactly what it saw before; the limit check admits exactly
what fits every window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from billfold.wallets.limits import (
    BPS_WHOLE,
    WINDOWS,
    TierFigures,
    check_limits,
    effective_limits,
    limits_for,
    reduced,
)

_AMOUNT_MAX = 2**63 - 1
_FIGURE = st.integers(min_value=1, max_value=_AMOUNT_MAX)
_ORDERED = st.lists(_FIGURE, min_size=3, max_size=3).map(lambda found: sorted(found))
_FIGURES = st.none() | _ORDERED.map(lambda found: (found[0], found[1], found[2]))
_OVERRIDES = st.dictionaries(st.sampled_from(WINDOWS), _FIGURE)
_BPS = st.none() | st.integers(min_value=0, max_value=BPS_WHOLE)
_USED = st.integers(min_value=0, max_value=2**64)


@given(
    tier=st.integers(0, 3),
    exponent=st.integers(0, 18),
    figures=_FIGURES,
    overrides=_OVERRIDES,
    bps=_BPS,
)
def test_the_tenants_figure_replaces_the_default_and_composes_as_documented(
    tier: int,
    exponent: int,
    figures: TierFigures | None,
    overrides: dict[str, int],
    bps: int | None,
) -> None:
    base = dict(zip(WINDOWS, figures or limits_for(tier, exponent), strict=True))
    limits = effective_limits(
        tier=tier, exponent=exponent, overrides=overrides, reduction_bps=bps, tier_figures=figures
    )
    assert [limit.window for limit in limits] == list(WINDOWS)
    for limit in limits:
        whole = max(base[limit.window], overrides.get(limit.window, 0))
        assert limit.limit_minor == reduced(whole, bps)
        assert limit.tier_minor == base[limit.window]
        assert limit.tier_source == ("default" if figures is None else "tenant")
        assert limit.override_minor == overrides.get(limit.window)
        if limit.limit_minor < whole:
            assert limit.source == "risk_reduction"
        else:
            expected = "override" if whole > base[limit.window] else "tier"
            assert limit.source == expected


@given(
    tier=st.integers(0, 3),
    exponent=st.integers(0, 18),
    overrides=_OVERRIDES,
    bps=_BPS,
)
def test_a_tenant_that_set_nothing_sees_the_default_table(
    tier: int, exponent: int, overrides: dict[str, int], bps: int | None
) -> None:
    without = effective_limits(tier=tier, exponent=exponent, overrides=overrides, reduction_bps=bps)
    unset = effective_limits(
        tier=tier, exponent=exponent, overrides=overrides, reduction_bps=bps, tier_figures=None
    )
    assert without == unset
    assert [limit.tier_minor for limit in unset] == list(limits_for(tier, exponent))


@given(
    tier=st.integers(0, 3),
    exponent=st.integers(0, 18),
    figures=_FIGURES,
    overrides=_OVERRIDES,
    bps=_BPS,
    amount=st.integers(min_value=1, max_value=2**64),
    daily=_USED,
    monthly=_USED,
)
def test_the_check_admits_exactly_what_fits_the_limits_shown(
    tier: int,
    exponent: int,
    figures: TierFigures | None,
    overrides: dict[str, int],
    bps: int | None,
    amount: int,
    daily: int,
    monthly: int,
) -> None:
    shown = {
        limit.window: limit.limit_minor
        for limit in effective_limits(
            tier=tier,
            exponent=exponent,
            overrides=overrides,
            reduction_bps=bps,
            tier_figures=figures,
        )
    }
    breach = check_limits(
        tier=tier,
        exponent=exponent,
        amount_minor=amount,
        daily_used_minor=daily,
        monthly_used_minor=monthly,
        overrides=overrides,
        reduction_bps=bps,
        tier_figures=figures,
    )
    fits = (
        amount <= shown["per_transaction"]
        and daily + amount <= shown["daily"]
        and monthly + amount <= shown["monthly"]
    )
    assert (breach is None) == fits
    if breach is not None:
        assert breach.limit_minor == shown[breach.window]


@given(
    tier=st.integers(0, 3),
    lower=_ORDERED,
    raise_by=st.lists(st.integers(0, 10**12), min_size=3, max_size=3),
    overrides=_OVERRIDES,
    bps=_BPS,
)
def test_raising_the_tenants_figures_never_lowers_a_limit(
    tier: int,
    lower: list[int],
    raise_by: list[int],
    overrides: dict[str, int],
    bps: int | None,
) -> None:
    low = (lower[0], lower[1], lower[2])
    high = (low[0] + raise_by[0], low[1] + raise_by[1], low[2] + raise_by[2])
    before, after = (
        effective_limits(
            tier=tier, exponent=2, overrides=overrides, reduction_bps=bps, tier_figures=figures
        )
        for figures in (low, high)
    )
    for old, new in zip(before, after, strict=True):
        assert new.limit_minor >= old.limit_minor

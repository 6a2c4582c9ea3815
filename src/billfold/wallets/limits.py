"""Spending limits by KYC tier: per transfer, per day and per month. Pure.

A simple tier model (the compliance work extends it): tier 0 is an unverified holder, 3 a
fully verified one. The **default** table (:data:`TIER_LIMITS`) is in whole units of the
currency, scaled by its exponent: one table for every currency, which suits none well
(tier 1 may send 1,000 JPY, about 6 USD, but also 1,000 ETH). So a tenant may set its own
figures per mode, tier and currency, in minor units (``wallets.tier_limits``, a four-eyes
``tier_limits_change`` approval): the **tier's figure** of a window is the tenant's figure
when it has one for that tier and currency (``tier_figures``), else the default table's,
scaled (:func:`limits_for`). Everything below composes on that figure alone, so a tenant
that sets nothing sees exactly the default table.

A holder's limit for one window and currency can be raised above the tier's figure by an
**override** (a four-eyes ``limit_increase`` approval, see ``wallets.overrides``): the
effective limit of a window is the higher of the two, so an override never lowers a limit
and a later tier upgrade is never undone by an old override.

A risk **reduction** (an automated ``lower_limits`` response, see ``wallets.reductions``)
then caps every window at a fraction of that figure (``reduction_bps`` / 10,000): the
effective limit is ``min(max(tier, override), max(tier, override) * bps / 10,000)``. A
reduction only ever lowers a limit, and lifting it restores the figure exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "BPS_WHOLE",
    "DEFAULT_TIER",
    "TIER_LIMITS",
    "TIER_MAX",
    "WINDOWS",
    "EffectiveLimit",
    "LimitBreach",
    "TierFigures",
    "TierLimits",
    "TierSource",
    "check_limits",
    "effective_limits",
    "limits_for",
    "reduced",
]

TIER_MAX = 3
DEFAULT_TIER = 1
"""The tier of a holder nobody has assessed: a verified phone or email."""
WINDOWS: Final = ("per_transaction", "daily", "monthly")
"""The limits' names, as a ``limit_increase`` approval's ``limit`` names them."""
BPS_WHOLE = 10_000
"""A reduction of this many basis points leaves a limit whole."""


@dataclass(frozen=True, slots=True)
class TierLimits:
    """Most a holder may send, in whole units of any currency."""

    per_transaction_units: int
    daily_units: int
    monthly_units: int


TIER_LIMITS: dict[int, TierLimits] = {
    0: TierLimits(per_transaction_units=100, daily_units=200, monthly_units=1_000),
    1: TierLimits(per_transaction_units=1_000, daily_units=2_500, monthly_units=10_000),
    2: TierLimits(per_transaction_units=10_000, daily_units=25_000, monthly_units=100_000),
    3: TierLimits(per_transaction_units=100_000, daily_units=250_000, monthly_units=1_000_000),
}


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """Which limit an amount would exceed, and the numbers that show it (minor units)."""

    window: str
    """`per_transaction`, `daily` or `monthly`."""
    limit_minor: int
    used_minor: int


TierFigures = tuple[int, int, int]
"""A tier's (per transfer, daily, monthly) limits in one currency, in minor units."""
TierSource = Literal["default", "tenant"]
"""Where a tier's figures come from: the default table (scaled) or the tenant's own."""


def limits_for(tier: int, exponent: int) -> TierFigures:
    """The default table's (per transfer, daily, monthly) limits of `tier`, scaled to a
    currency of `exponent` minor-unit digits."""
    limits = TIER_LIMITS[min(max(tier, 0), TIER_MAX)]
    scale = 10**exponent
    return (
        limits.per_transaction_units * scale,
        limits.daily_units * scale,
        limits.monthly_units * scale,
    )


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    """One window's limit in force (minor units) and where it comes from."""

    window: str
    limit_minor: int
    tier_minor: int
    """The tier's figure."""
    override_minor: int | None
    """The override's figure, if the holder has one for this window and currency."""
    reduction_bps: int | None = None
    """The risk reduction in force (basis points of the figure left), if any."""
    tier_source: TierSource = "default"
    """``tenant`` when `tier_minor` is the tenant's own figure for the tier and currency,
    ``default`` when it is the default table's, scaled."""

    @property
    def source(self) -> str:
        """``risk_reduction`` when a reduction lowers the figure, ``override`` when an
        override raises the tier's figure, else ``tier``."""
        if self.limit_minor < max(self.tier_minor, self.override_minor or 0):
            return "risk_reduction"
        return "override" if self.limit_minor > self.tier_minor else "tier"


def reduced(limit_minor: int, reduction_bps: int | None) -> int:
    """`limit_minor` under a reduction of `reduction_bps` (None: no reduction). Rounded
    down: a reduction never leaves more than its fraction."""
    if reduction_bps is None:
        return limit_minor
    return min(limit_minor, limit_minor * max(0, min(reduction_bps, BPS_WHOLE)) // BPS_WHOLE)


def effective_limits(
    *,
    tier: int,
    exponent: int,
    overrides: Mapping[str, int] | None = None,
    reduction_bps: int | None = None,
    tier_figures: TierFigures | None = None,
) -> tuple[EffectiveLimit, EffectiveLimit, EffectiveLimit]:
    """The (per transfer, daily, monthly) limits in force: per window, the tier's figure
    (the tenant's `tier_figures` for this tier and currency when it set some, else the
    default table's) or the override's (by window name, minor units), whichever is
    higher, then lowered by the risk reduction (`reduction_bps`), if any."""
    given = overrides or {}
    figures = limits_for(tier, exponent) if tier_figures is None else tier_figures
    source: TierSource = "default" if tier_figures is None else "tenant"
    per_transaction, daily, monthly = (
        EffectiveLimit(
            window=window,
            limit_minor=reduced(max(figure, given.get(window, 0)), reduction_bps),
            tier_minor=figure,
            override_minor=given.get(window),
            reduction_bps=reduction_bps,
            tier_source=source,
        )
        for window, figure in zip(WINDOWS, figures, strict=True)
    )
    return per_transaction, daily, monthly


def check_limits(
    *,
    tier: int,
    exponent: int,
    amount_minor: int,
    daily_used_minor: int,
    monthly_used_minor: int,
    overrides: Mapping[str, int] | None = None,
    reduction_bps: int | None = None,
    tier_figures: TierFigures | None = None,
) -> LimitBreach | None:
    """The first limit `amount_minor` would breach on top of what was used, or None.
    `tier_figures` (the tenant's, minor units) replace the default table's for this tier
    and currency; `overrides` (window name to minor units) raise the tier's figures they
    name; a risk reduction (`reduction_bps`) then lowers every window."""
    per_transaction, daily, monthly = (
        limit.limit_minor
        for limit in effective_limits(
            tier=tier,
            exponent=exponent,
            overrides=overrides,
            reduction_bps=reduction_bps,
            tier_figures=tier_figures,
        )
    )
    if amount_minor > per_transaction:
        return LimitBreach("per_transaction", per_transaction, 0)
    if daily_used_minor + amount_minor > daily:
        return LimitBreach("daily", daily, daily_used_minor)
    if monthly_used_minor + amount_minor > monthly:
        return LimitBreach("monthly", monthly, monthly_used_minor)
    return None

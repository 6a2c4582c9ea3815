"""Spending limits by KYC tier: per transfer, per day and per month. Pure.

A simple tier model (the compliance work extends it): tier 0 is an unverified holder, 3 a
fully verified one. Limits are in whole units of the currency and scaled by its exponent,
so the same table serves USD (cents), JPY (yen) and USDC (micro-units).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_TIER",
    "TIER_LIMITS",
    "TIER_MAX",
    "LimitBreach",
    "TierLimits",
    "check_limits",
    "limits_for",
]

TIER_MAX = 3
DEFAULT_TIER = 1
"""The tier of a holder nobody has assessed: a verified phone or email."""


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


def limits_for(tier: int, exponent: int) -> tuple[int, int, int]:
    """The (per transfer, daily, monthly) limits of `tier` in minor units."""
    limits = TIER_LIMITS[min(max(tier, 0), TIER_MAX)]
    scale = 10**exponent
    return (
        limits.per_transaction_units * scale,
        limits.daily_units * scale,
        limits.monthly_units * scale,
    )


def check_limits(
    *, tier: int, exponent: int, amount_minor: int, daily_used_minor: int, monthly_used_minor: int
) -> LimitBreach | None:
    """The first limit `amount_minor` would breach on top of what was used, or None."""
    per_transaction, daily, monthly = limits_for(tier, exponent)
    if amount_minor > per_transaction:
        return LimitBreach("per_transaction", per_transaction, 0)
    if daily_used_minor + amount_minor > daily:
        return LimitBreach("daily", daily, daily_used_minor)
    if monthly_used_minor + amount_minor > monthly:
        return LimitBreach("monthly", monthly, monthly_used_minor)
    return None

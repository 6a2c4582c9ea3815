"""The features a movement carries by itself, for an engine installed before (or without)
the real feature source (``billfold.risk.features``): kind, amount, currency, the
amount in major units, the IP country, whether a device or an IP is known, the hour and
day of week (UTC). Every other known feature is None, so rules over velocity or history
simply do not hit (a comparison with null is an evaluation error: no hit).
"""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.money import default_registry
from billfold.risk.rules import FALLBACK_FEATURE_NAMES
from billfold.risk.types import FeatureValue, Movement

__all__ = ["MovementFeatures", "movement_features"]

_NANOSECONDS_PER_SECOND = 1_000_000_000


def movement_features(movement: Movement) -> dict[str, FeatureValue]:
    """The features computed from the movement alone."""
    registry = default_registry()
    exponent = registry.get(movement.currency).exponent if movement.currency in registry else 2
    at = datetime.datetime.fromtimestamp(
        movement.occurred_at_ns // _NANOSECONDS_PER_SECOND, tz=datetime.UTC
    )
    return {
        "kind": movement.kind.value,
        "amount": movement.amount,
        "currency": movement.currency,
        "amount_major": movement.amount / 10**exponent,
        "ip_country": movement.ip_country,
        "has_device": movement.device_id is not None,
        "has_ip": movement.ip is not None,
        "hour_of_day": at.hour,
        "day_of_week": at.weekday(),
    }


class MovementFeatures:
    """A `FeatureSource` of the movement's own features; counts nothing."""

    @property
    def names(self) -> frozenset[str]:
        return FALLBACK_FEATURE_NAMES

    async def compute(self, session: AsyncSession, movement: Movement) -> dict[str, FeatureValue]:
        return movement_features(movement)

    async def record(self, session: AsyncSession, movement: Movement) -> None:
        return None

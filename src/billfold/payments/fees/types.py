"""The contract between payment flows and the fee engine.

A flow describes the movement (`FeeContext`); the engine answers with the fee lines that
apply (`FeeQuote`), each explaining which rule charged what. Flows depend only on this
module, so they can be written and tested with `NO_FEES` before a schedule exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["NO_FEES", "FeeContext", "FeeLine", "FeeQuote", "FeeQuoter"]


@dataclass(frozen=True, slots=True)
class FeeContext:
    """One movement to price. Amounts are integers in `currency`'s minor unit."""

    tenant_id: uuid.UUID
    merchant_id: uuid.UUID | None
    method: str
    """How the money moves: `card`, `bank_transfer`, `wallet`, `p2p`, `payout`, `fx`, …"""
    currency: str
    amount_minor: int
    region: str | None = None
    """ISO 3166-1 alpha-2 country of the payer or the instrument, when known."""
    monthly_volume_minor: int = 0
    """The merchant's (or tenant's) volume so far this month, for tiered schedules."""


@dataclass(frozen=True, slots=True)
class FeeLine:
    """One fee and the rule that charged it."""

    rule: str
    """The stable name of the schedule rule, e.g. `card_eu_tier_2`."""
    description: str
    """Human-readable: `1.40% + 0.25 EUR, min 0.50 EUR`."""
    amount_minor: int
    currency: str
    fixed_minor: int = 0
    """The part of `amount_minor` not proportional to the amount (the fixed part, or what a
    minimum added): kept when the payment is refunded, the rest is returned pro rata."""


@dataclass(frozen=True, slots=True)
class FeeQuote:
    lines: tuple[FeeLine, ...] = ()

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)


class FeeQuoter(Protocol):
    """Prices a movement inside the caller's unit of work (it may read schedules)."""

    async def __call__(self, session: AsyncSession, context: FeeContext) -> FeeQuote: ...


async def _no_fees(session: AsyncSession, context: FeeContext) -> FeeQuote:
    return FeeQuote()


NO_FEES: FeeQuoter = _no_fees
"""Charges nothing: the default until a tenant configures a schedule."""

"""Limit overrides: a holder's spending limit for one window and currency, raised above
their KYC tier's figure by a four-eyes ``limit_increase`` approval.

The approval's payload (``identity.operators.payloads.LimitIncreasePayload``) names the
holder (``subject_id``, ``usr_…``), the window (``limit``: ``per_transaction``, ``daily`` or
``monthly``), the currency (``asset``) and the new limit (``amount``, minor units).
:func:`apply_limit_increase` records it in the caller's transaction (the approval's own,
so the decision and its effect commit together), keyed by the approval id: applying the
same approval again records nothing new. The latest approval per (holder, currency,
window) is in force; the effective limit is the higher of it and the tier's figure.

Only end users have spending limits today (merchants receive; nothing they send is
limited), so an increase for anything but a ``usr_…`` of the tenant is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.identity.users.models import EndUser
from billfold.kit.ids import InvalidId, parse_id
from billfold.wallets.accounts import OwnerKind
from billfold.wallets.errors import UnsupportedCurrency
from billfold.wallets.limits import DEFAULT_TIER, WINDOWS, EffectiveLimit, effective_limits
from billfold.wallets.models import LimitOverride
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import currency_exponent

__all__ = [
    "OVERRIDE_AMOUNT_MAX",
    "HolderLimits",
    "LimitIncrease",
    "OverrideOutcome",
    "apply_limit_increase",
    "holder_limits",
    "overrides_by_window",
]

OVERRIDE_AMOUNT_MAX = 2**63 - 1
"""The most an override may be (a 64-bit column; payments amounts are bounded alike)."""


@dataclass(frozen=True, slots=True)
class LimitIncrease:
    """An approved increase, as the approval carries it."""

    approval_id: uuid.UUID
    tenant_id: uuid.UUID
    subject_id: str
    window: str
    currency: str
    amount: int
    requested_by: uuid.UUID
    approved_by: uuid.UUID
    approved_at: int


@dataclass(frozen=True, slots=True)
class OverrideOutcome:
    """Whether the override is in the table (now or already), or why it cannot be."""

    applied: bool
    failure: str | None = None
    already: bool = False
    """The approval's override was recorded before (a repeated execution)."""
    mode: Mode | None = None


async def apply_limit_increase(session: AsyncSession, increase: LimitIncrease) -> OverrideOutcome:
    """Record the override `increase` grants, in `session`'s transaction (flush only)."""
    if increase.window not in WINDOWS:
        return OverrideOutcome(applied=False, failure="unknown_limit")
    try:
        currency_exponent(increase.currency)
    except UnsupportedCurrency:
        return OverrideOutcome(applied=False, failure="unsupported_currency")
    if not 0 < increase.amount <= OVERRIDE_AMOUNT_MAX:
        return OverrideOutcome(applied=False, failure="amount_out_of_range")
    if not increase.subject_id.startswith("usr_"):
        return OverrideOutcome(applied=False, failure="holder_has_no_limits")
    try:
        user_id = parse_id("usr", increase.subject_id)
    except InvalidId:
        return OverrideOutcome(applied=False, failure="holder_not_found")
    user = await session.get(EndUser, user_id)
    if user is None or user.tenant_id != increase.tenant_id:
        return OverrideOutcome(applied=False, failure="holder_not_found")
    inserted = await WalletRepository(session).add_override_if_absent(
        LimitOverride(
            approval_id=increase.approval_id,
            tenant_id=increase.tenant_id,
            mode=user.mode,
            owner_kind=OwnerKind.USER.value,
            owner_id=user_id,
            currency=increase.currency,
            limit_window=increase.window,
            amount=increase.amount,
            requested_by=increase.requested_by,
            approved_by=increase.approved_by,
            approved_at=increase.approved_at,
        )
    )
    return OverrideOutcome(applied=True, already=not inserted, mode=Mode(user.mode))


async def overrides_by_window(
    session: AsyncSession, *, owner_kind: OwnerKind, owner_id: uuid.UUID, currency: str
) -> dict[str, int]:
    """The overrides in force for the holder in `currency`: window name to minor units."""
    rows = await WalletRepository(session).overrides_in_force(
        owner_kind=owner_kind.value, owner_id=owner_id, currency=currency
    )
    return {window: row.amount for window, row in rows.items()}


@dataclass(frozen=True, slots=True)
class HolderLimits:
    """An end user's limits in one currency: their tier, each window's limit in force, and
    the override behind it (if any)."""

    tier: int
    limits: tuple[EffectiveLimit, EffectiveLimit, EffectiveLimit]
    overrides: dict[str, LimitOverride]


async def holder_limits(
    session: AsyncSession, *, user_id: uuid.UUID, currency: str
) -> HolderLimits:
    """What limits `user_id` has in `currency` now (`unsupported_currency` if none)."""
    exponent = currency_exponent(currency)
    repository = WalletRepository(session)
    stored_tier = await repository.tier_of(user_id)
    tier = DEFAULT_TIER if stored_tier is None else stored_tier
    overrides = await repository.overrides_in_force(
        owner_kind=OwnerKind.USER.value, owner_id=user_id, currency=currency
    )
    limits = effective_limits(
        tier=tier,
        exponent=exponent,
        overrides={window: row.amount for window, row in overrides.items()},
    )
    return HolderLimits(tier=tier, limits=limits, overrides=overrides)

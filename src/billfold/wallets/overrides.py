"""Limit overrides: a holder's spending limit for one window and currency, raised above
their KYC tier's figure by a four-eyes ``limit_increase`` approval.

The approval's payload (``identity.operators.payloads.LimitIncreasePayload``) names the
holder (``subject_id``, ``usr_…``), the window (``limit``: ``per_transaction``, ``daily`` or
``monthly``), the currency (``asset``) and the new limit (``amount``, minor units).
:func:`apply_limit_increase` records it in the caller's transaction (the approval's own,
so the decision and its effect commit together), keyed by the approval id: applying the
same approval again records nothing new. The latest approval per (holder, currency,
window) is in force; the effective limit is the higher of it and the tier's figure (the
tenant's own for the holder's tier and currency, ``wallets.tier_limits``, else the default
table's).

Only end users have spending limits today (merchants receive; nothing they send is
limited), so an increase for anything but a ``usr_…`` of the tenant is refused.
:func:`check_limit_increase` says why an increase cannot apply; it runs when the increase is
requested (``flows.approvals.LimitIncreaseExecutor.check``: the request is refused with the
error) and again when it is applied (the approval ``failed``, its ``failure`` the error's
code).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.identity.users.models import EndUser
from billfold.kit.ids import InvalidId, parse_id
from billfold.wallets.accounts import OwnerKind
from billfold.wallets.errors import (
    AmountOutOfRange,
    HolderHasNoLimits,
    HolderNotFound,
    UnknownLimit,
    UnsupportedCurrency,
)
from billfold.wallets.limits import DEFAULT_TIER, WINDOWS, EffectiveLimit, effective_limits
from billfold.wallets.models import LimitOverride
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import currency_exponent
from billfold.wallets.tier_limits import figures_of, tenant_figures

__all__ = [
    "LIMIT_INCREASE_REFUSALS",
    "OVERRIDE_AMOUNT_MAX",
    "HolderLimits",
    "LimitIncrease",
    "OverrideOutcome",
    "apply_limit_increase",
    "check_limit_increase",
    "holder_limits",
    "overrides_by_window",
]

OVERRIDE_AMOUNT_MAX = 2**63 - 1
"""The most an override may be (a 64-bit column; payments amounts are bounded alike)."""
LIMIT_INCREASE_REFUSALS: Final = (
    UnknownLimit,
    UnsupportedCurrency,
    AmountOutOfRange,
    HolderHasNoLimits,
    HolderNotFound,
)
"""Why an increase cannot apply (:func:`check_limit_increase`), in the order it is checked."""


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


async def check_limit_increase(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    subject_id: str,
    window: str,
    currency: str,
    amount: int,
) -> EndUser:
    """The end user an increase of `window` in `currency` to `amount` for `subject_id`
    would apply to, or the reason it cannot apply (raised; each reason's code is also the
    ``failure`` of an approval that could not apply it). Reads only.

    Asked when the increase is requested (so an inapplicable one is refused before anyone
    is asked to approve it) and again when it is applied."""
    if window not in WINDOWS:
        raise UnknownLimit(f"A limit is one of {', '.join(WINDOWS)}.", windows=list(WINDOWS))
    currency_exponent(currency)  # unsupported_currency
    if not 0 < amount <= OVERRIDE_AMOUNT_MAX:
        raise AmountOutOfRange(
            f"A limit is from 1 to {OVERRIDE_AMOUNT_MAX} minor units.",
            amount_max=str(OVERRIDE_AMOUNT_MAX),
        )
    if not subject_id.startswith("usr_"):
        raise HolderHasNoLimits("Only end users (usr_…) have spending limits.")
    try:
        user_id = parse_id("usr", subject_id)
    except InvalidId:
        raise HolderNotFound("No such user.") from None
    user = await session.get(EndUser, user_id)
    if user is None or user.tenant_id != tenant_id:  # another tenant's is as absent
        raise HolderNotFound("No such user.")
    return user


async def apply_limit_increase(session: AsyncSession, increase: LimitIncrease) -> OverrideOutcome:
    """Record the override `increase` grants, in `session`'s transaction (flush only), after
    checking again that it applies (:func:`check_limit_increase`): the holder it was asked
    for may be gone by now."""
    try:
        user = await check_limit_increase(
            session,
            tenant_id=increase.tenant_id,
            subject_id=increase.subject_id,
            window=increase.window,
            currency=increase.currency,
            amount=increase.amount,
        )
    except LIMIT_INCREASE_REFUSALS as refused:
        return OverrideOutcome(applied=False, failure=refused.code)
    inserted = await WalletRepository(session).add_override_if_absent(
        LimitOverride(
            approval_id=increase.approval_id,
            tenant_id=increase.tenant_id,
            mode=user.mode,
            owner_kind=OwnerKind.USER.value,
            owner_id=user.id,
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
    """An end user's limits in one currency: their tier, each window's limit in force (a
    risk reduction included), and the override behind it (if any)."""

    tier: int
    limits: tuple[EffectiveLimit, EffectiveLimit, EffectiveLimit]
    overrides: dict[str, LimitOverride]


async def holder_limits(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode | str,
    user_id: uuid.UUID,
    currency: str,
) -> HolderLimits:
    """What limits `user_id` (an end user of `tenant_id` in `mode`) has in `currency` now
    (`unsupported_currency` if none): composed as the spending check composes them
    (``payments.service.check_spending_limits``), on the tenant's own figures for the
    user's tier and currency when it set some."""
    exponent = currency_exponent(currency)
    repository = WalletRepository(session)
    stored_tier = await repository.tier_of(user_id)
    tier = DEFAULT_TIER if stored_tier is None else stored_tier
    own = await tenant_figures(
        session, tenant_id=tenant_id, mode=mode, tier=tier, currency=currency
    )
    overrides = await repository.overrides_in_force(
        owner_kind=OwnerKind.USER.value, owner_id=user_id, currency=currency
    )
    limits = effective_limits(
        tier=tier,
        exponent=exponent,
        overrides={window: row.amount for window, row in overrides.items()},
        reduction_bps=await repository.reduction_in_force(user_id=user_id),
        tier_figures=None if own is None else figures_of(own),
    )
    return HolderLimits(tier=tier, limits=limits, overrides=overrides)

"""Tenants' own tier limits: per mode, KYC tier and currency, the per-transfer, daily and
monthly limits in minor units, in place of the default table's whole units.

The default table (``wallets.limits.TIER_LIMITS``) scales one set of whole units by each
currency's exponent, so tier 1 may send 1,000 JPY (about 6 USD) and 1,000 ETH (millions):
a tenant with JPY or ETH wallets needs figures of its own. Raising them raises every
holder of the tier at once, so a change is a four-eyes approval (``tier_limits_change``,
``identity.operators.payloads.TierLimitsChangePayload``), as one holder's increase is:
:func:`check_tier_limits_change` refuses one that cannot apply when it is requested
(``flows.approvals.TierLimitsChangeExecutor.check``) and again when it is approved, and
:func:`apply_tier_limits_change` records it in the approval's own transaction, keyed by the
approval id (executing the same approval again adds nothing).

Changes are append-only (``wallets_tier_limits``): the latest approved one per (tenant,
mode, tier, currency) is in force, a removal (no figures) included, which brings the
default table back. A tier's figure in force (:func:`tenant_figures`) is what every check
and every read of a holder's limits composes on (``wallets.limits.effective_limits``):
overrides still raise it, risk reductions still lower the result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.types import Mode
from billfold.kit.money import default_registry
from billfold.wallets.errors import (
    AmountOutOfRange,
    LimitsOutOfOrder,
    TierLimitsNotSet,
    UnknownTier,
    UnsupportedCurrency,
)
from billfold.wallets.limits import TIER_MAX, WINDOWS, TierFigures, TierSource, limits_for
from billfold.wallets.models import TierLimit
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import currency_exponent

__all__ = [
    "TIERS",
    "TIER_LIMITS_CHANGE_REFUSALS",
    "TIER_LIMIT_AMOUNT_MAX",
    "TIER_LIMIT_ROWS_MAX",
    "TierFiguresInForce",
    "TierLimitsChange",
    "TierLimitsOutcome",
    "apply_tier_limits_change",
    "check_tier_limits_change",
    "figures_of",
    "tenant_figures",
    "tier_limits_in_force",
]

TIERS: Final = tuple(range(TIER_MAX + 1))
TIER_LIMIT_AMOUNT_MAX = 2**63 - 1
"""The most a tier's figure may be: a 64-bit column, as a holder's override."""
TIER_LIMIT_ROWS_MAX = len(TIERS) * len(default_registry())
"""Every (tier, currency) a tenant could set in one mode: what one listing may hold."""
TIER_LIMITS_CHANGE_REFUSALS: Final = (
    UnknownTier,
    UnsupportedCurrency,
    AmountOutOfRange,
    LimitsOutOfOrder,
    TierLimitsNotSet,
)
"""Why a change cannot apply (:func:`check_tier_limits_change`), in the order it is checked."""


def figures_of(row: TierLimit) -> TierFigures | None:
    """The row's (per transfer, daily, monthly) figures, or None for a removal."""
    if row.per_transaction is None or row.daily is None or row.monthly is None:
        return None
    return (row.per_transaction, row.daily, row.monthly)


async def tenant_figures(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: Mode | str, tier: int, currency: str
) -> TierLimit | None:
    """The tenant's change in force for (mode, tier, currency) when it sets figures; None
    when the tenant never set any or removed them (the default table applies)."""
    row = await WalletRepository(session).tier_limit_in_force(
        tenant_id=tenant_id, mode=Mode(mode).value, tier=tier, currency=currency
    )
    return None if row is None or figures_of(row) is None else row


@dataclass(frozen=True, slots=True)
class TierFiguresInForce:
    """One tier's limits in one currency as they apply: the tenant's or the default's."""

    tier: int
    currency: str
    figures: TierFigures
    """(per transfer, daily, monthly), minor units."""
    source: TierSource
    """``tenant`` (its own figures, from `change`) or ``default`` (the table, scaled)."""
    change: TierLimit | None = None
    """The approved change behind the tenant's figures."""


async def tier_limits_in_force(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: Mode | str, currency: str | None
) -> list[TierFiguresInForce]:
    """With `currency`: every tier's limits in it (``unsupported_currency`` if wallets do
    not hold it), the tenant's where it set some, else the default table's. Without: the
    tenant's own figures in force in `mode`, by currency then tier (the defaults apply to
    everything else)."""
    exponent = None if currency is None else currency_exponent(currency)
    rows = await WalletRepository(session).tier_limits_in_force(
        tenant_id=tenant_id, mode=Mode(mode).value, currency=currency, limit=TIER_LIMIT_ROWS_MAX
    )
    configured: dict[tuple[int, str], TierFiguresInForce] = {}
    for row in rows:
        figures = figures_of(row)
        if figures is not None:  # a removal: the default applies
            configured[(row.tier, row.currency)] = TierFiguresInForce(
                tier=row.tier, currency=row.currency, figures=figures, source="tenant", change=row
            )
    if currency is None or exponent is None:
        return list(configured.values())
    return [
        configured.get((tier, currency))
        or TierFiguresInForce(
            tier=tier, currency=currency, figures=limits_for(tier, exponent), source="default"
        )
        for tier in TIERS
    ]


async def check_tier_limits_change(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode | str,
    tier: int,
    currency: str,
    figures: TierFigures | None,
) -> None:
    """Raise why setting `figures` (None: removing the tenant's) for (mode, tier,
    currency) cannot apply; each reason's code is also the ``failure`` of an approval that
    could not apply it. Reads only.

    Asked when the change is requested (so an inapplicable one is refused before anyone is
    asked to approve it) and again when it is applied."""
    if tier not in TIERS:
        raise UnknownTier(f"A KYC tier is one of {', '.join(map(str, TIERS))}.", tiers=list(TIERS))
    currency_exponent(currency)  # unsupported_currency
    if figures is None:
        current = await tenant_figures(
            session, tenant_id=tenant_id, mode=mode, tier=tier, currency=currency
        )
        if current is None:
            raise TierLimitsNotSet(
                f"The tenant has no {Mode(mode).value} limits of its own for tier {tier} in"
                f" {currency} to remove: the default table applies already.",
                mode=Mode(mode).value,
                tier=tier,
                currency=currency,
            )
        return
    if not all(0 < figure <= TIER_LIMIT_AMOUNT_MAX for figure in figures):
        raise AmountOutOfRange(
            f"A limit is from 1 to {TIER_LIMIT_AMOUNT_MAX} minor units.",
            amount_max=str(TIER_LIMIT_AMOUNT_MAX),
        )
    per_transaction, daily, monthly = figures
    if not per_transaction <= daily <= monthly:
        raise LimitsOutOfOrder(
            f"Limits must be per_transaction <= daily <= monthly; got {per_transaction},"
            f" {daily} and {monthly}.",
            windows=list(WINDOWS),
        )


@dataclass(frozen=True, slots=True)
class TierLimitsChange:
    """An approved change, as the approval carries it."""

    approval_id: uuid.UUID
    tenant_id: uuid.UUID
    mode: Mode
    tier: int
    currency: str
    figures: TierFigures | None
    """The new figures, or None: remove the tenant's (the default table applies again)."""
    requested_by: uuid.UUID
    approved_by: uuid.UUID
    approved_at: int


@dataclass(frozen=True, slots=True)
class TierLimitsOutcome:
    """Whether the change is in the table (now or already), or why it cannot be, and what
    was in force before it (None on a repeated execution: that was said the first time)."""

    applied: bool
    failure: str | None = None
    already: bool = False
    """The approval's change was recorded before (a repeated execution)."""
    before: TierFiguresInForce | None = None


async def apply_tier_limits_change(
    session: AsyncSession, change: TierLimitsChange
) -> TierLimitsOutcome:
    """Record `change` in `session`'s transaction (flush only), after checking again that
    it applies (:func:`check_tier_limits_change`). An approval recorded before is found
    first, by its id, so executing it again neither fails (its removal already done) nor
    adds anything."""
    repository = WalletRepository(session)
    if await repository.get_tier_limit(change.approval_id) is not None:
        return TierLimitsOutcome(applied=True, already=True)
    try:
        await check_tier_limits_change(
            session,
            tenant_id=change.tenant_id,
            mode=change.mode,
            tier=change.tier,
            currency=change.currency,
            figures=change.figures,
        )
    except TIER_LIMITS_CHANGE_REFUSALS as refused:
        return TierLimitsOutcome(applied=False, failure=refused.code)
    before = await _in_force(session, change)
    per_transaction, daily, monthly = change.figures or (None, None, None)
    inserted = await repository.add_tier_limit_if_absent(
        TierLimit(
            approval_id=change.approval_id,
            tenant_id=change.tenant_id,
            mode=change.mode.value,
            tier=change.tier,
            currency=change.currency,
            per_transaction=per_transaction,
            daily=daily,
            monthly=monthly,
            requested_by=change.requested_by,
            approved_by=change.approved_by,
            approved_at=change.approved_at,
        )
    )
    if not inserted:  # a concurrent execution of the same approval got there first
        return TierLimitsOutcome(applied=True, already=True)
    return TierLimitsOutcome(applied=True, before=before)


async def _in_force(session: AsyncSession, change: TierLimitsChange) -> TierFiguresInForce:
    """The figures in force for the change's (mode, tier, currency), before it applies."""
    row = await tenant_figures(
        session,
        tenant_id=change.tenant_id,
        mode=change.mode,
        tier=change.tier,
        currency=change.currency,
    )
    figures = None if row is None else figures_of(row)
    if figures is None:
        default = limits_for(change.tier, currency_exponent(change.currency))
        return TierFiguresInForce(
            tier=change.tier, currency=change.currency, figures=default, source="default"
        )
    return TierFiguresInForce(
        tier=change.tier, currency=change.currency, figures=figures, source="tenant", change=row
    )

"""Wallets' tables: wallets (one per owner and currency), merchants, holders' KYC tiers,
the tenants' own tier limits and the limit overrides four-eyes approvals set, and the
reductions risk responses impose.

Balances are never stored here: they are the ledger account's. Times are ns since the epoch.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "CURRENCY_LENGTH_MAX",
    "HolderTier",
    "LimitOverride",
    "LimitReduction",
    "Merchant",
    "TierLimit",
    "Wallet",
]

CURRENCY_LENGTH_MAX = 12
LEGAL_NAME_LENGTH_MAX = 200
FEE_SCHEDULE_LENGTH_MAX = 64


class Wallet(Base):
    """An owner's money in one currency; its id is its ledger account's id."""

    __tablename__ = "wallets_wallets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The ledger account id (deterministic, see `wallets.accounts`); `wal_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    owner_kind: Mapped[str] = mapped_column(String(16))
    """user or merchant."""
    owner_id: Mapped[uuid.UUID] = mapped_column()
    """The end user's or the merchant's id."""
    currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH_MAX))
    """The ledger (asset) of the account."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the wallet was opened (its first use)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("owner_kind IN ('user', 'merchant')", name="owner_kind"),
        Index(
            "uq_wallets_wallets_owner",
            "tenant_id",
            "mode",
            "owner_kind",
            "owner_id",
            "currency",
            unique=True,
        ),
    )


class Merchant(Base):
    """A business the tenant onboarded to accept payments."""

    __tablename__ = "wallets_merchants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `mer_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant that onboarded the merchant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    legal_name: Mapped[str] = mapped_column(String(LEGAL_NAME_LENGTH_MAX))
    """The registered name."""
    category_code: Mapped[str] = mapped_column(String(4))
    """ISO 18245 merchant category code, four digits."""
    settlement_currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH_MAX))
    """The currency the merchant is settled in."""
    fee_schedule: Mapped[str | None] = mapped_column(String(FEE_SCHEDULE_LENGTH_MAX))
    """The tenant's own label for the merchant's pricing plan, shown as given; the fee
    engine prices by the schedule bound to the merchant's id, never by this."""
    split_rule_id: Mapped[uuid.UUID | None] = mapped_column()
    """The revenue-sharing rule applied to what this merchant receives, if any."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the merchant was onboarded."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("ix_wallets_merchants_tenant_id_mode_id", "tenant_id", "mode", "id"),
    )


class HolderTier(Base):
    """An end user's KYC tier; a user without a row is at the default tier."""

    __tablename__ = "wallets_holder_tiers"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The end user."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    tier: Mapped[int] = mapped_column(Integer)
    """0 (unverified) to 3 (fully verified)."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When the tier was last set."""

    __table_args__ = (CheckConstraint("tier BETWEEN 0 AND 3", name="tier"),)


class LimitOverride(Base):
    """One approved limit increase: a holder's limit for one window and currency, raised
    above their tier's figure. Append-only; the latest approval per (holder, currency,
    window) is the one in force. Its id is the approval's, so applying an approval twice
    adds nothing."""

    __tablename__ = "wallets_limit_overrides"

    approval_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The four-eyes approval that granted it (`apr_<hex>` in the API)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live: the holder's."""
    owner_kind: Mapped[str] = mapped_column(String(16))
    """user (the only holders with spending limits today) or merchant."""
    owner_id: Mapped[uuid.UUID] = mapped_column()
    """The end user's or the merchant's id."""
    currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH_MAX))
    """The currency whose limit it raises."""
    limit_window: Mapped[str] = mapped_column(String(16))
    """per_transaction, daily or monthly."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """The new limit in minor units; the tier's figure still applies when higher."""
    requested_by: Mapped[uuid.UUID] = mapped_column()
    """The operator who asked for it."""
    approved_by: Mapped[uuid.UUID] = mapped_column()
    """The second operator, who approved it."""
    approved_at: Mapped[int] = mapped_column(BigInteger)
    """When it was approved (and took effect)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("owner_kind IN ('user', 'merchant')", name="owner_kind"),
        CheckConstraint(
            "limit_window IN ('per_transaction', 'daily', 'monthly')", name="limit_window"
        ),
        CheckConstraint("amount > 0", name="amount"),
        Index(
            "ix_wallets_limit_overrides_owner",
            "owner_id",
            "currency",
            "limit_window",
            "approved_at",
        ),
    )


class LimitReduction(Base):
    """A risk reduction of an end user's spending limits: while it is in force (not lifted)
    every window's limit, in every currency, is at most ``limit_bps`` / 10,000 of the tier's
    or override's figure. Put in place by an automated risk response (``lower_limits``,
    ``billfold.risk.cases``) and lifted when that response is reversed; its id is the
    response's, so applying the same response twice adds nothing."""

    __tablename__ = "wallets_limit_reductions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The risk response that asked for it (`rrs_<hex>` in the API)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live: the holder's."""
    user_id: Mapped[uuid.UUID] = mapped_column()
    """The end user whose limits it lowers."""
    limit_bps: Mapped[int] = mapped_column(Integer)
    """What is left of each limit, in basis points (0: nothing may be sent)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it took effect."""
    lifted_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was lifted (the response reversed); None while in force."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("limit_bps BETWEEN 0 AND 10000", name="limit_bps"),
        Index("ix_wallets_limit_reductions_user", "user_id", "lifted_at"),
    )


class TierLimit(Base):
    """One approved change of a tenant's own spending limits for a KYC tier in one currency
    and mode (four-eyes ``tier_limits_change``): the three figures in minor units, or none
    (a removal: the default table applies again). Append-only, like the overrides: the
    latest approval per (tenant, mode, tier, currency) is in force, and the history stays.
    Its id is the approval's, so executing an approval twice adds nothing."""

    __tablename__ = "wallets_tier_limits"

    approval_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The four-eyes approval that made the change (`apr_<hex>` in the API)."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant whose holders the figures apply to."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live: the figures apply to the holders of this mode only."""
    tier: Mapped[int] = mapped_column(Integer)
    """The KYC tier, 0 to 3."""
    currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH_MAX))
    """The currency the figures are in (its minor units)."""
    per_transaction: Mapped[int | None] = mapped_column(BigInteger)
    """Most one transfer may be, minor units; None (with the other two): removed."""
    daily: Mapped[int | None] = mapped_column(BigInteger)
    """Most sent in a UTC day, minor units."""
    monthly: Mapped[int | None] = mapped_column(BigInteger)
    """Most sent in a UTC month, minor units."""
    requested_by: Mapped[uuid.UUID] = mapped_column()
    """The operator who asked for it."""
    approved_by: Mapped[uuid.UUID] = mapped_column()
    """The second operator, who approved it."""
    approved_at: Mapped[int] = mapped_column(BigInteger)
    """When it was approved (and took effect)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("tier BETWEEN 0 AND 3", name="tier"),
        # Set (three ordered, positive figures) or removed (none): never half of each. The
        # NOT NULLs matter: a comparison with NULL is unknown, which a CHECK lets pass.
        CheckConstraint(
            "(per_transaction IS NULL AND daily IS NULL AND monthly IS NULL)"
            " OR (per_transaction IS NOT NULL AND daily IS NOT NULL AND monthly IS NOT NULL"
            " AND per_transaction > 0 AND per_transaction <= daily AND daily <= monthly)",
            name="figures",
        ),
        Index(
            "ix_wallets_tier_limits_key",
            "tenant_id",
            "mode",
            "tier",
            "currency",
            "approved_at",
        ),
    )

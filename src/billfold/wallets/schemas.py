"""Wallets' API models. Amounts are decimal strings, as in the ledger API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billfold.kit.fields import JsonInt
from billfold.ledger.schemas import StorableText

__all__ = [
    "HolderLimitsResponse",
    "HolderTierRequest",
    "HolderTierResponse",
    "LimitOverrideResponse",
    "LimitResponse",
    "MerchantCreateRequest",
    "MerchantResponse",
    "SystemAccountResponse",
    "SystemAccountsResponse",
    "TierDefaultResponse",
    "TierLimitResponse",
    "TierLimitsResponse",
    "WalletResponse",
    "WalletsResponse",
]

CURRENCY_PATTERN = r"^[A-Z0-9]{2,12}$"


class WalletResponse(BaseModel):
    id: str
    """`wal_<hex>`: the same hex is the ledger account (`acc_<hex>`)."""
    owner: str
    """`usr_…` or `mer_…`."""
    currency: str
    available: str
    pending: str
    held: str


class WalletsResponse(BaseModel):
    items: list[WalletResponse]


class MerchantCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_name: StorableText = Field(min_length=1, max_length=200)
    category_code: str = Field(pattern=r"^[0-9]{4}$", description="ISO 18245 MCC")
    settlement_currency: str = Field(pattern=CURRENCY_PATTERN)
    fee_schedule: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Your own label for the merchant's pricing plan, stored and shown as"
        " given. It prices nothing: a merchant's fees come from the fee schedule created"
        " for its `merchant_id` (`POST /v1/fee-schedules`), else the tenant's default one.",
    )


class MerchantResponse(BaseModel):
    id: str
    legal_name: str
    category_code: str
    settlement_currency: str
    fee_schedule: str | None
    mode: str


class SystemAccountResponse(BaseModel):
    name: str
    account_id: str
    code: int
    debits_posted: str
    credits_posted: str
    debits_pending: str
    credits_pending: str


class SystemAccountsResponse(BaseModel):
    currency: str
    items: list[SystemAccountResponse]


class HolderTierRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: JsonInt = Field(ge=0, le=3)


class HolderTierResponse(BaseModel):
    user_id: str
    tier: int


class LimitOverrideResponse(BaseModel):
    """The approved limit increase behind a window's limit."""

    amount: str
    """The override's figure, minor units."""
    approval_id: str
    """`apr_…`: the four-eyes approval that granted it."""
    approved_at: datetime


class LimitResponse(BaseModel):
    window: Literal["per_transaction", "daily", "monthly"]
    limit: str
    """The limit in force, minor units: the higher of the tier's and the override's,
    lowered by a risk reduction when one is in force."""
    source: Literal["tier", "override", "risk_reduction"]
    tier_limit: str
    """What the KYC tier alone allows, minor units."""
    tier_source: Literal["default", "tenant"]
    """Where `tier_limit` comes from: the tenant's own figures for the tier and currency
    (a four-eyes `tier_limits_change`), or the default table scaled to the currency."""
    override: LimitOverrideResponse | None
    """The latest approved override for this window and currency, if any (in force only
    when above the tier's figure)."""
    reduction_bps: int | None = None
    """The risk reduction in force (basis points of the figure kept), if any."""


class HolderLimitsResponse(BaseModel):
    user_id: str
    currency: str
    tier: int
    limits: list[LimitResponse]


class TierLimitResponse(BaseModel):
    """One KYC tier's limits in one currency, as they apply to the tenant's holders."""

    tier: int
    currency: str
    per_transaction: str
    """Minor units, as every limit figure (they may exceed 2^53)."""
    daily: str
    monthly: str
    source: Literal["default", "tenant"]
    """`tenant`: its own figures (a four-eyes `tier_limits_change`); `default`: the
    default table, scaled to the currency."""
    approval_id: str | None
    """`apr_…`: the approval that set the tenant's figures (None for the default)."""
    approved_at: datetime | None


class TierDefaultResponse(BaseModel):
    """The default table's row for one tier, in whole units of any currency: scaled by the
    currency's exponent wherever the tenant has set no figures of its own."""

    tier: int
    per_transaction_units: str
    daily_units: str
    monthly_units: str


class TierLimitsResponse(BaseModel):
    mode: Literal["test", "live"]
    currency: str | None
    """The currency asked for, if any."""
    items: list[TierLimitResponse]
    """With `currency`: every tier's limits in it, the tenant's or the default. Without:
    the tenant's own figures in force, by currency then tier (everything else is
    `defaults`)."""
    defaults: list[TierDefaultResponse]

"""Wallets' errors.

BillfoldError
├── NotFound
│   ├── WalletNotFound          404 wallet_not_found
│   ├── MerchantNotFound        404 merchant_not_found
│   └── HolderNotFound          404 holder_not_found
├── Conflict
│   └── TierLimitsNotSet        409 tier_limits_not_set
└── ValidationFailed
    ├── UnsupportedCurrency     422 unsupported_currency
    ├── InvalidMerchant         422 invalid_merchant
    ├── UnknownLimit            422 unknown_limit
    ├── HolderHasNoLimits       422 holder_has_no_limits
    ├── AmountOutOfRange        422 amount_out_of_range
    ├── UnknownTier             422 unknown_tier
    └── LimitsOutOfOrder        422 limits_out_of_order

``UnknownLimit``, ``HolderHasNoLimits`` and ``AmountOutOfRange``, with ``HolderNotFound`` and
``UnsupportedCurrency``, refuse a limit increase (``wallets.overrides``); ``UnknownTier``,
``UnsupportedCurrency``, ``AmountOutOfRange``, ``LimitsOutOfOrder`` and ``TierLimitsNotSet``
a change of a tenant's tier limits (``wallets.tier_limits``). Their codes are also the
``failure`` of an approval that could not apply one.
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ValidationFailed

__all__ = [
    "AmountOutOfRange",
    "HolderHasNoLimits",
    "HolderNotFound",
    "InvalidMerchant",
    "LimitsOutOfOrder",
    "MerchantNotFound",
    "TierLimitsNotSet",
    "UnknownLimit",
    "UnknownTier",
    "UnsupportedCurrency",
    "WalletNotFound",
]


class WalletNotFound(NotFound):
    code = "wallet_not_found"
    title = "Wallet not found"


class MerchantNotFound(NotFound):
    code = "merchant_not_found"
    title = "Merchant not found"


class HolderNotFound(NotFound):
    code = "holder_not_found"
    title = "Wallet holder not found"


class UnsupportedCurrency(ValidationFailed):
    code = "unsupported_currency"
    title = "Unsupported currency"


class InvalidMerchant(ValidationFailed):
    code = "invalid_merchant"
    title = "Invalid merchant"


class UnknownLimit(ValidationFailed):
    """Raised with the extension ``windows``: the limits there are."""

    code = "unknown_limit"
    title = "Unknown limit"


class HolderHasNoLimits(ValidationFailed):
    code = "holder_has_no_limits"
    title = "This holder has no spending limits"


class AmountOutOfRange(ValidationFailed):
    """Raised with the extension ``amount_max`` (a decimal string)."""

    code = "amount_out_of_range"
    title = "Amount out of range"


class UnknownTier(ValidationFailed):
    """Raised with the extension ``tiers``: the KYC tiers there are."""

    code = "unknown_tier"
    title = "Unknown KYC tier"


class LimitsOutOfOrder(ValidationFailed):
    """A tier's figures must be per_transaction <= daily <= monthly: a day holds at least
    one transfer and a month at least one day, so anything else is a mistake (the smaller
    figure would silently bind the larger window)."""

    code = "limits_out_of_order"
    title = "Limits out of order"


class TierLimitsNotSet(Conflict):
    """Removing the tenant's figures for a tier and currency it has not set: nothing to do.
    Raised with the extensions ``mode``, ``tier`` and ``currency``."""

    code = "tier_limits_not_set"
    title = "No tier limits of the tenant's to remove"

"""Wallets' errors.

BillfoldError
├── NotFound
│   ├── WalletNotFound          404 wallet_not_found
│   ├── MerchantNotFound        404 merchant_not_found
│   └── HolderNotFound          404 holder_not_found
└── ValidationFailed
    ├── UnsupportedCurrency     422 unsupported_currency
    ├── InvalidMerchant         422 invalid_merchant
    ├── UnknownLimit            422 unknown_limit
    ├── HolderHasNoLimits       422 holder_has_no_limits
    └── AmountOutOfRange        422 amount_out_of_range

The last three, with ``HolderNotFound`` and ``UnsupportedCurrency``, refuse a limit increase
(``wallets.overrides``); their codes are also the ``failure`` of an approval that could not
apply one.
"""

from __future__ import annotations

from billfold.kit.errors import NotFound, ValidationFailed

__all__ = [
    "AmountOutOfRange",
    "HolderHasNoLimits",
    "HolderNotFound",
    "InvalidMerchant",
    "MerchantNotFound",
    "UnknownLimit",
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

"""Wallets' errors.

BillfoldError
├── NotFound
│   ├── WalletNotFound          404 wallet_not_found
│   ├── MerchantNotFound        404 merchant_not_found
│   └── HolderNotFound          404 holder_not_found
└── ValidationFailed
    ├── UnsupportedCurrency     422 unsupported_currency
    └── InvalidMerchant         422 invalid_merchant
"""

from __future__ import annotations

from billfold.kit.errors import NotFound, ValidationFailed

__all__ = [
    "HolderNotFound",
    "InvalidMerchant",
    "MerchantNotFound",
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

"""Wallets' API models. Amounts are decimal strings, as in the ledger API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HolderTierRequest",
    "HolderTierResponse",
    "MerchantCreateRequest",
    "MerchantResponse",
    "SystemAccountResponse",
    "SystemAccountsResponse",
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

    legal_name: str = Field(min_length=1, max_length=200)
    category_code: str = Field(pattern=r"^[0-9]{4}$", description="ISO 18245 MCC")
    settlement_currency: str = Field(pattern=CURRENCY_PATTERN)
    fee_schedule: str | None = Field(default=None, min_length=1, max_length=64)


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

    tier: int = Field(ge=0, le=3)


class HolderTierResponse(BaseModel):
    user_id: str
    tier: int

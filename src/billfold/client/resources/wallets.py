"""Wallets, merchants, the chart of accounts and spending limits (API key: `wallets:read`,
`payments:read`/`payments:write` for merchants, `users:admin` for KYC tiers)."""

from __future__ import annotations

from typing import cast

from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    KycTier,
    Merchant,
    SystemAccounts,
    TierLimits,
    UserLimits,
    WalletList,
)

__all__ = ["Merchants", "Wallets"]


class Wallets(Resource):
    def of_user(self, user_id: str) -> WalletList:
        """An end user's wallets and balances (`wallets:read`)."""
        path = f"/v1/users/{path_id(user_id)}/wallets"
        return cast(WalletList, self._transport.request("GET", path))

    def of_merchant(self, merchant_id: str) -> WalletList:
        path = f"/v1/merchants/{path_id(merchant_id)}/wallets"
        return cast(WalletList, self._transport.request("GET", path))

    def system_accounts(self, *, currency: str) -> SystemAccounts:
        """The tenant's chart of system accounts in `currency`, with balances."""
        answer = self._transport.request(
            "GET", "/v1/system-accounts", params={"currency": currency}
        )
        return cast(SystemAccounts, answer)

    def set_kyc_tier(
        self, user_id: str, *, tier: int, idempotency_key: str | None = None
    ) -> KycTier:
        """An end user's KYC tier, 0 to 3 (`users:admin`); it sets their limits. PUT."""
        path = f"/v1/users/{path_id(user_id)}/kyc-tier"
        body = {"tier": tier}
        answer = self._transport.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return cast(KycTier, answer)

    def limits_of(self, user_id: str, *, currency: str) -> UserLimits:
        """An end user's spending limits in `currency` (`wallets:read`): per window, the
        limit in force, the KYC tier's figure and the approved limit increase raising it."""
        path = f"/v1/users/{path_id(user_id)}/limits"
        answer = self._transport.request("GET", path, params={"currency": currency})
        return cast(UserLimits, answer)

    def tier_limits(self, *, currency: str | None = None) -> TierLimits:
        """The tenant's spending limits by KYC tier in the key's mode (`wallets:read`).
        With `currency`: every tier's limits in it, the tenant's own where it set some
        (an approved `tier_limits_change`), else the default table's scaled to it. Without:
        the tenant's own figures in force; `defaults` is the default table in whole units."""
        params = without_none({"currency": currency})
        answer = self._transport.request("GET", "/v1/tier-limits", params=params)
        return cast(TierLimits, answer)


class Merchants(Resource):
    def create(
        self,
        *,
        legal_name: str,
        category_code: str,
        settlement_currency: str,
        fee_schedule: str | None = None,
        idempotency_key: str | None = None,
    ) -> Merchant:
        """Onboard a merchant (`payments:write`; `category_code` an ISO 18245 MCC); its
        wallet in `settlement_currency` is opened."""
        body = without_none(
            {
                "legal_name": legal_name,
                "category_code": category_code,
                "settlement_currency": settlement_currency,
                "fee_schedule": fee_schedule,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/merchants", json=body, idempotency_key=idempotency_key
        )
        return cast(Merchant, answer)

    def get(self, merchant_id: str) -> Merchant:
        path = f"/v1/merchants/{path_id(merchant_id)}"
        return cast(Merchant, self._transport.request("GET", path))

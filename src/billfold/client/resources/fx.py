"""Foreign exchange (API key: `fx:read` to read, `fx:write` to quote and convert,
`tenant:admin` to set the spread)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import FxConversion, FxQuote, FxQuotePage, FxRates, FxSettings

__all__ = ["Fx"]


class Fx(Resource):
    def rates(self) -> FxRates:
        """The reference rates quotes are made from (units per 1 EUR)."""
        return cast(FxRates, self._transport.request("GET", "/v1/fx/rates"))

    def create_quote(
        self,
        *,
        sell_currency: str,
        buy_currency: str,
        sell_amount: int | str | None = None,
        buy_amount: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> FxQuote:
        """Lock a rate for one conversion: exactly one of `sell_amount` and `buy_amount`
        (minor units). The quote expires after the tenant's `quote_ttl_s`."""
        if (sell_amount is None) == (buy_amount is None):
            raise ValueError("give exactly one of sell_amount and buy_amount")
        body = without_none(
            {
                "sell_currency": sell_currency,
                "buy_currency": buy_currency,
                "sell_amount": None if sell_amount is None else str(sell_amount),
                "buy_amount": None if buy_amount is None else str(buy_amount),
            }
        )
        answer = self._transport.request(
            "POST", "/v1/fx/quotes", json=body, idempotency_key=idempotency_key
        )
        return cast(FxQuote, answer)

    def list_quotes(self, *, limit: int | None = None, cursor: str | None = None) -> FxQuotePage:
        params = without_none({"limit": limit, "cursor": cursor})
        return cast(FxQuotePage, self._transport.request("GET", "/v1/fx/quotes", params=params))

    def iterate_quotes(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[FxQuote]:
        return iterate(
            lambda cursor: self.list_quotes(limit=limit, cursor=cursor), pages_max=pages_max
        )

    def get_quote(self, quote_id: str) -> FxQuote:
        """One quote, with its `status`: open, expired, claimed (a conversion under way) or used."""
        path = f"/v1/fx/quotes/{path_id(quote_id)}"
        return cast(FxQuote, self._transport.request("GET", path))

    def convert(
        self,
        *,
        quote_id: str,
        sell_account_id: str,
        buy_account_id: str,
        idempotency_key: str | None = None,
    ) -> FxConversion:
        """Use an open quote between one owner's two accounts (in the quote's sell and buy
        currencies). An expired or used quote is a `ConflictError` (`fx_quote_expired`,
        `fx_quote_already_used`); too little money a `ValidationError` `fx_insufficient_funds`."""
        body = {
            "quote_id": quote_id,
            "sell_account_id": sell_account_id,
            "buy_account_id": buy_account_id,
        }
        answer = self._transport.request(
            "POST", "/v1/fx/conversions", json=body, idempotency_key=idempotency_key
        )
        return cast(FxConversion, answer)

    def settings(self) -> FxSettings:
        """The tenant's spread (its own when `custom`, else the platform default) and the
        quote lifetime."""
        return cast(FxSettings, self._transport.request("GET", "/v1/fx/settings"))

    def set_spread(self, *, spread_bps: int, idempotency_key: str | None = None) -> FxSettings:
        """Set the tenant's spread (`tenant:admin`). PUT: safe to repeat."""
        body = {"spread_bps": spread_bps}
        answer = self._transport.request(
            "PUT", "/v1/fx/settings", json=body, idempotency_key=idempotency_key
        )
        return cast(FxSettings, answer)

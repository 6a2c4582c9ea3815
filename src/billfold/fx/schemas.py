"""The FX API's request and response models. Amounts are strings of minor units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from billfold.fx.models import FxQuoteRow, FxTenantSettingsRow
from billfold.fx.pricing import SPREAD_BPS_MAX
from billfold.fx.rates import RateTable
from billfold.fx.review import DecidedConversion
from billfold.fx.service import Conversion
from billfold.kit.http.openapi import exactly_one_of
from billfold.kit.ids import format_id

__all__ = [
    "ACCOUNT_ID_PREFIX",
    "QUOTE_ID_PREFIX",
    "TRANSFER_ID_PREFIX",
    "ConversionRequest",
    "ConversionResponse",
    "FxSettingsRequest",
    "FxSettingsResponse",
    "QuotePage",
    "QuoteRequest",
    "QuoteResponse",
    "RatesResponse",
]

QUOTE_ID_PREFIX = "fxq"
ACCOUNT_ID_PREFIX = "acc"
TRANSFER_ID_PREFIX = "txf"

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
AmountText = Annotated[
    str,
    StringConstraints(pattern=r"^[1-9][0-9]{0,17}$"),
    Field(description="Minor units, 1 to 10^18 - 1, as a string."),
]
IdText = Annotated[str, StringConstraints(max_length=40)]


def _datetime(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuoteRequest(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("sell_amount", "buy_amount")
    )

    sell_currency: Currency
    buy_currency: Currency
    sell_amount: AmountText | None = None
    """Give exactly one of sell_amount and buy_amount."""
    buy_amount: AmountText | None = None

    @model_validator(mode="after")
    def _exactly_one_amount(self) -> QuoteRequest:
        if (self.sell_amount is None) == (self.buy_amount is None):
            raise ValueError("give exactly one of sell_amount and buy_amount")
        return self

    def fixed(self) -> tuple[Literal["sell", "buy"], int]:
        if self.sell_amount is not None:
            return "sell", int(self.sell_amount)
        assert self.buy_amount is not None
        return "buy", int(self.buy_amount)


class QuoteResponse(BaseModel):
    id: str
    sell_currency: str
    buy_currency: str
    sell_amount: str
    buy_amount: str
    fixed_side: str
    rate: str
    """The locked rate: buy-currency units per sell-currency unit, spread included."""
    mid_rate: str
    spread_bps: int
    rates_date: str
    created_at: datetime
    expires_at: datetime
    status: Literal["open", "expired", "claimed", "used"] = Field(
        description="`claimed`: a conversion between `sell_account_id` and `buy_account_id`"
        " is under way (or was interrupted): retrying it finishes it; recovery completes or"
        " gives back a claim older than a minute."
    )
    claimed_at: datetime | None
    used_at: datetime | None
    sell_account_id: str | None
    buy_account_id: str | None

    @classmethod
    def from_row(cls, row: FxQuoteRow, *, now_ns: int) -> QuoteResponse:
        status: Literal["open", "expired", "claimed", "used"] = (
            "used"
            if row.used_at is not None
            else "claimed"
            if row.claimed_at is not None
            else "expired"
            if now_ns >= row.expires_at
            else "open"
        )
        return cls(
            id=format_id(QUOTE_ID_PREFIX, row.id),
            sell_currency=row.sell_currency,
            buy_currency=row.buy_currency,
            sell_amount=str(row.sell_amount),
            buy_amount=str(row.buy_amount),
            fixed_side=row.fixed_side,
            rate=row.rate,
            mid_rate=row.mid_rate,
            spread_bps=row.spread_bps,
            rates_date=row.rates_date,
            created_at=_datetime(row.created_at),
            expires_at=_datetime(row.expires_at),
            status=status,
            claimed_at=None if row.claimed_at is None else _datetime(row.claimed_at),
            used_at=None if row.used_at is None else _datetime(row.used_at),
            sell_account_id=None
            if row.sell_account_id is None
            else format_id(ACCOUNT_ID_PREFIX, row.sell_account_id),
            buy_account_id=None
            if row.buy_account_id is None
            else format_id(ACCOUNT_ID_PREFIX, row.buy_account_id),
        )


class QuotePage(BaseModel):
    items: list[QuoteResponse]
    next_cursor: str | None


class ConversionRequest(_Body):
    quote_id: IdText
    sell_account_id: IdText
    buy_account_id: IdText


class ConversionResponse(BaseModel):
    quote: QuoteResponse
    sell_transfer_id: str
    buy_transfer_id: str
    id: str | None = Field(
        default=None, description="The conversion's id (`cnv_…`, one per quote)."
    )
    state: Literal["succeeded", "in_review"] = Field(
        default="succeeded",
        description="`in_review`: held by a risk decision, both legs pending until an"
        " analyst decides.",
    )
    risk_decision_id: str | None = Field(
        default=None, description="The risk decision (`rdc_…`); null without a risk engine."
    )

    @classmethod
    def from_conversion(cls, conversion: Conversion, *, now_ns: int) -> ConversionResponse:
        return cls(
            quote=QuoteResponse.from_row(conversion.quote, now_ns=now_ns),
            sell_transfer_id=format_id(TRANSFER_ID_PREFIX, conversion.sell_transfer_id),
            buy_transfer_id=format_id(TRANSFER_ID_PREFIX, conversion.buy_transfer_id),
            id=format_id("cnv", conversion.quote.id),
        )

    @classmethod
    def from_decided(cls, decided: DecidedConversion, *, now_ns: int) -> ConversionResponse:
        plain = cls.from_conversion(decided.conversion, now_ns=now_ns)
        return plain.model_copy(
            update={
                "state": "in_review" if decided.held else "succeeded",
                "risk_decision_id": None
                if decided.decision_id is None
                else format_id("rdc", decided.decision_id),
            }
        )


class FxSettingsRequest(_Body):
    spread_bps: Annotated[int, Field(strict=True, ge=0, le=SPREAD_BPS_MAX)]


class FxSettingsResponse(BaseModel):
    spread_bps: int
    quote_ttl_s: int
    custom: bool
    """Whether the tenant set its own spread (else the platform default applies)."""

    @classmethod
    def build(
        cls, row: FxTenantSettingsRow | None, *, default_spread_bps: int, quote_ttl_s: int
    ) -> FxSettingsResponse:
        return cls(
            spread_bps=default_spread_bps if row is None else row.spread_bps,
            quote_ttl_s=quote_ttl_s,
            custom=row is not None,
        )


class RatesResponse(BaseModel):
    base: str
    date: str
    rates: dict[str, str]
    """Units of each currency per 1 EUR, as published."""

    @classmethod
    def from_table(cls, table: RateTable) -> RatesResponse:
        return cls(
            base="EUR",
            date=table.date.isoformat(),
            rates={code: str(rate) for code, rate in sorted(table.rates.items())},
        )

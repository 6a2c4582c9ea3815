"""FX errors, each with a stable code::

NotFound            404
└── FxQuoteNotFound             fx_quote_not_found
Conflict            409
├── FxQuoteExpired              fx_quote_expired
├── FxQuoteAlreadyUsed          fx_quote_already_used
└── FxConversionRefused         fx_conversion_refused   (ledger_status says why)
ValidationFailed    422
├── FxInvalidAccounts           fx_invalid_accounts
├── FxInsufficientFunds         fx_insufficient_funds
├── FxSameCurrency              fx_same_currency
├── FxAmountTooSmall            fx_amount_too_small      (pricing)
├── FxAmountTooLarge            fx_amount_too_large      (pricing)
├── UnknownCurrencyPair         fx_unknown_currency_pair (rates)
└── InvalidRatesDocument        invalid_rates_document   (rates)
ServiceUnavailable  503
└── RatesUnavailable            fx_rates_unavailable     (rates)
"""

from __future__ import annotations

from billfold.fx.pricing import FxAmountTooLarge, FxAmountTooSmall
from billfold.fx.rates import InvalidRatesDocument, RatesUnavailable, UnknownCurrencyPair
from billfold.kit.errors import Conflict, NotFound, ValidationFailed

__all__ = [
    "FxAmountTooLarge",
    "FxAmountTooSmall",
    "FxConversionRefused",
    "FxInsufficientFunds",
    "FxInvalidAccounts",
    "FxQuoteAlreadyUsed",
    "FxQuoteExpired",
    "FxQuoteNotFound",
    "FxSameCurrency",
    "InvalidRatesDocument",
    "RatesUnavailable",
    "UnknownCurrencyPair",
]


class FxQuoteNotFound(NotFound):
    code = "fx_quote_not_found"
    title = "FX quote not found"


class FxQuoteExpired(Conflict):
    code = "fx_quote_expired"
    title = "FX quote expired"


class FxQuoteAlreadyUsed(Conflict):
    code = "fx_quote_already_used"
    title = "FX quote already used"


class FxConversionRefused(Conflict):
    code = "fx_conversion_refused"
    title = "The ledger refused the conversion"


class FxInvalidAccounts(ValidationFailed):
    code = "fx_invalid_accounts"
    title = "Accounts unfit for this conversion"


class FxInsufficientFunds(ValidationFailed):
    code = "fx_insufficient_funds"
    title = "Insufficient funds"


class FxSameCurrency(ValidationFailed):
    code = "fx_same_currency"
    title = "Sell and buy currencies are the same"

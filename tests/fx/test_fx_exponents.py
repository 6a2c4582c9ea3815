"""Quotes between currencies of every ISO 4217 exponent (0: JPY, 3: KWD and BHD, 4: CLF):
the amounts are in each currency's own minor units, rounded in the platform's favour as
the README's formulas say, and the rates are plain decimals however small (a rial's worth
in euros or dinars is below 10^-6, where `str(Decimal)` turns to exponent notation)."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from fx.test_fx_api import Tenant
from ledger.ledger_api_support import api, auth

RATES = """<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
    xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <Cube><Cube time="2024-01-02">
    <Cube currency="JPY" rate="156.33"/><Cube currency="KWD" rate="0.3392"/>
    <Cube currency="BHD" rate="0.4155"/><Cube currency="CLF" rate="0.0271"/>
    <Cube currency="USD" rate="1.1050"/><Cube currency="IRR" rate="1100000"/>
  </Cube></Cube>
</gesmes:Envelope>
"""
PER_EUR = {
    "EUR": "1",
    "JPY": "156.33",
    "KWD": "0.3392",
    "BHD": "0.4155",
    "CLF": "0.0271",
    "USD": "1.1050",
    "IRR": "1100000",
}
EXPONENT = {"EUR": 2, "JPY": 0, "KWD": 3, "BHD": 3, "CLF": 4, "USD": 2, "IRR": 2}
PLAIN_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
SPREAD_BPS = 50


def _check_locked_rate(sell: str, buy: str, rate: Decimal) -> None:
    """mid x (10000 - spread) / 10000, rounded down to 12 significant digits."""
    exact = Fraction(PER_EUR[buy]) / Fraction(PER_EUR[sell]) * (10_000 - SPREAD_BPS) / 10_000
    digits = rate.as_tuple().digits
    assert len(digits) <= 12
    last_digit = Fraction(10) ** rate.as_tuple().exponent
    assert Fraction(rate) <= exact < Fraction(rate) + last_digit


@pytest.mark.parametrize(
    ("sell", "buy", "side", "amount"),
    [
        ("KWD", "JPY", "sell_amount", "1000"),  # 1.000 KWD
        ("JPY", "KWD", "sell_amount", "500"),  # 500 JPY
        ("JPY", "KWD", "buy_amount", "1"),  # 0.001 KWD
        ("BHD", "CLF", "sell_amount", "12345"),
        ("CLF", "USD", "buy_amount", "100"),
        ("EUR", "CLF", "sell_amount", "1"),
        ("IRR", "KWD", "sell_amount", "100000000"),  # 1 000 000.00 IRR
        ("IRR", "EUR", "buy_amount", "100"),
        ("KWD", "IRR", "sell_amount", "1"),
    ],
)
def test_quotes_use_each_currencys_exponent(
    database_url: str, tmp_path: Path, sell: str, buy: str, side: str, amount: str
) -> None:
    rates = tmp_path / "rates.xml"
    rates.write_text(RATES)
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=str(rates), fx_spread_bps_default=SPREAD_BPS) as client:
        body: dict[str, Any] = {"sell_currency": sell, "buy_currency": buy, side: amount}
        response = client.post("/v1/fx/quotes", json=body, headers=auth(tenant.writer))
        assert response.status_code == 201, response.text
        quote = response.json()
        assert PLAIN_DECIMAL.fullmatch(quote["rate"]), quote["rate"]
        assert PLAIN_DECIMAL.fullmatch(quote["mid_rate"]), quote["mid_rate"]
        _check_locked_rate(sell, buy, Decimal(quote["rate"]))
        rate = Fraction(Decimal(quote["rate"]))
        scale = Fraction(10) ** (EXPONENT[buy] - EXPONENT[sell])
        sell_minor, buy_minor = int(quote["sell_amount"]), int(quote["buy_amount"])
        if side == "sell_amount":
            assert sell_minor == int(amount)
            assert buy_minor == math.floor(sell_minor * rate * scale)
        else:
            assert buy_minor == int(amount)
            assert sell_minor == math.ceil(buy_minor / rate / scale)

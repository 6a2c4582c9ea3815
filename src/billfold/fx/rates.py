"""Exchange rates: where they come from (`RatesSource`) and how they combine.

Rates are the European Central Bank's euro reference rates: units of a currency per 1 EUR,
as exact `Decimal`s (never floats). A cross rate between two other currencies goes through
the euro: `USD -> JPY = rate(JPY) / rate(USD)`.

`EcbXmlRatesSource` reads a file in the ECB's published `eurofxref` XML format
(`BILLFOLD_FX_RATES_FILE`), re-reading it when it changed and `refresh_interval_s` has
passed; `StaticRatesSource` serves a fixed table (tests, or a deployment that pins rates).

The parser is strict and safe: no network access, no DTD, no entity expansion, a size limit,
and every malformed document raises :class:`InvalidRatesDocument`.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Final, Protocol

from lxml import etree

from billfold.kit.errors import ServiceUnavailable, ValidationFailed, invariant
from billfold.kit.settings import Settings

__all__ = [
    "BASE_CURRENCY",
    "ECB_NAMESPACE",
    "GESMES_NAMESPACE",
    "RATES_DOCUMENT_MAX_BYTES",
    "EcbXmlRatesSource",
    "InvalidRatesDocument",
    "NoRatesSource",
    "RateTable",
    "RatesSource",
    "RatesUnavailable",
    "StaticRatesSource",
    "UnknownCurrencyPair",
    "parse_ecb_xml",
    "rates_source_from_settings",
]

BASE_CURRENCY: Final = "EUR"
GESMES_NAMESPACE: Final = "http://www.gesmes.org/xml/2002-08-01"
ECB_NAMESPACE: Final = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
RATES_DOCUMENT_MAX_BYTES: Final = 16 * 1024 * 1024
"""The ECB's full history file (`eurofxref-hist.xml`, unzipped) is about 8 MiB and grows by
about 0.3 MiB a year; a daily or 90-day file is far smaller."""
CURRENCIES_MAX: Final = 200
DAYS_MAX: Final = 100_000

_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
# A positive decimal in plain notation: no exponent, sign, spaces or leading "+".
_RATE = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,12})?", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class InvalidRatesDocument(ValidationFailed):
    code = "invalid_rates_document"
    title = "Invalid exchange rates document"


class RatesUnavailable(ServiceUnavailable):
    code = "fx_rates_unavailable"
    title = "Exchange rates are unavailable"


class UnknownCurrencyPair(ValidationFailed):
    code = "fx_unknown_currency_pair"
    title = "No rate for this currency pair"


@dataclass(frozen=True, slots=True)
class RateTable:
    """The euro reference rates of one day: units of each currency per 1 EUR."""

    date: datetime.date
    rates: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        invariant(BASE_CURRENCY not in self.rates, "EUR is the base, not a quoted currency")
        for code, rate in self.rates.items():
            invariant(_CURRENCY.fullmatch(code) is not None, "currency codes are 3 letters")
            invariant(isinstance(rate, Decimal) and rate > 0, "rates are positive Decimals")
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))

    def per_euro(self, currency: str) -> Decimal:
        if currency == BASE_CURRENCY:
            return Decimal(1)
        rate = self.rates.get(currency)
        if rate is None:
            raise UnknownCurrencyPair(f"No reference rate for {currency}.", currency=currency)
        return rate

    def cross(self, *, sell: str, buy: str) -> Fraction:
        """Exact units of `buy` per unit of `sell`, through the euro."""
        return Fraction(self.per_euro(buy)) / Fraction(self.per_euro(sell))

    def currencies(self) -> frozenset[str]:
        return frozenset(self.rates) | {BASE_CURRENCY}


class RatesSource(Protocol):
    """Where the current rates come from."""

    def current(self) -> RateTable:
        """The latest rates; raises :class:`RatesUnavailable` when there are none."""
        ...


class NoRatesSource:
    """What a deployment without a rates file has: every quote is refused (503)."""

    def current(self) -> RateTable:
        raise RatesUnavailable("No exchange rates are configured (BILLFOLD_FX_RATES_FILE).")


def rates_source_from_settings(settings: Settings) -> RatesSource:
    if settings.fx_rates_file is None:
        return NoRatesSource()
    return EcbXmlRatesSource(
        settings.fx_rates_file, refresh_interval_s=settings.fx_rates_refresh_interval_s
    )


class StaticRatesSource:
    """A fixed table."""

    def __init__(self, table: RateTable) -> None:
        self._table = table

    def current(self) -> RateTable:
        return self._table


def _parser() -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network, no huge trees: a hostile file can
    # neither read local files, reach the network nor exhaust memory.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _rate(text: str | None) -> Decimal:
    if text is None or not _RATE.fullmatch(text):
        raise InvalidRatesDocument("A rate is a positive decimal such as '1.0850'.")
    rate = Decimal(text)
    if rate <= 0:
        raise InvalidRatesDocument("A rate is a positive decimal such as '1.0850'.")
    return rate


def _day(cube: etree._Element) -> tuple[datetime.date, dict[str, Decimal]]:
    text = cube.get("time")
    if text is None or not _DATE.fullmatch(text):
        raise InvalidRatesDocument("A day's Cube has time='YYYY-MM-DD'.")
    try:
        date = datetime.date.fromisoformat(text)
    except ValueError as error:
        raise InvalidRatesDocument("A day's Cube has time='YYYY-MM-DD'.") from error
    rates: dict[str, Decimal] = {}
    for entry in cube:
        if entry.tag != f"{{{ECB_NAMESPACE}}}Cube" or len(entry):
            raise InvalidRatesDocument("A day's Cube holds only empty rate Cubes.")
        currency = entry.get("currency")
        if currency is None or not _CURRENCY.fullmatch(currency) or currency == BASE_CURRENCY:
            raise InvalidRatesDocument("A rate Cube has currency='XXX' (not EUR).")
        if currency in rates:
            raise InvalidRatesDocument(f"{currency} appears twice in one day.")
        if len(rates) >= CURRENCIES_MAX:
            raise InvalidRatesDocument(f"A day has at most {CURRENCIES_MAX} rates.")
        rates[currency] = _rate(entry.get("rate"))
    if not rates:
        raise InvalidRatesDocument("A day's Cube holds at least one rate.")
    return date, rates


def parse_ecb_xml(data: bytes) -> RateTable:
    """The latest day of an ECB `eurofxref` document (daily, 90-day or historical)."""
    if not isinstance(data, bytes) or len(data) > RATES_DOCUMENT_MAX_BYTES:
        raise InvalidRatesDocument(f"A rates document is at most {RATES_DOCUMENT_MAX_BYTES} bytes.")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as error:
        raise InvalidRatesDocument("The rates document is not well-formed XML.") from error
    docinfo = root.getroottree().docinfo
    doctype: object = getattr(docinfo, "doctype", "")  # absent from lxml-stubs
    if doctype or docinfo.internalDTD is not None:
        raise InvalidRatesDocument("A rates document has no DOCTYPE.")
    if root.tag != f"{{{GESMES_NAMESPACE}}}Envelope":
        raise InvalidRatesDocument("The root element is gesmes:Envelope.")
    outer = root.findall(f"{{{ECB_NAMESPACE}}}Cube")
    if len(outer) != 1:
        raise InvalidRatesDocument("The envelope holds exactly one outer Cube.")
    days = list(outer[0])
    if not 1 <= len(days) <= DAYS_MAX:
        raise InvalidRatesDocument("The outer Cube holds at least one day.")
    latest: tuple[datetime.date, dict[str, Decimal]] | None = None
    seen: set[datetime.date] = set()
    for cube in days:
        if cube.tag != f"{{{ECB_NAMESPACE}}}Cube":
            raise InvalidRatesDocument("The outer Cube holds only day Cubes.")
        day = _day(cube)
        if day[0] in seen:
            raise InvalidRatesDocument("A day appears twice.")
        seen.add(day[0])
        if latest is None or day[0] > latest[0]:
            latest = day
    assert latest is not None
    return RateTable(date=latest[0], rates=latest[1])


class EcbXmlRatesSource:
    """Rates from an ECB XML file, re-read at most every `refresh_interval_s` when its
    modification time or size changed. A file that became unreadable or malformed keeps
    the last good table (and is retried next interval); with none, rates are unavailable."""

    def __init__(self, path: str | os.PathLike[str], *, refresh_interval_s: float) -> None:
        invariant(refresh_interval_s > 0, "the refresh interval is positive")
        self._path = os.fspath(path)
        self._refresh_interval_s = refresh_interval_s
        self._lock = threading.Lock()
        self._table: RateTable | None = None
        self._signature: tuple[int, int] | None = None
        self._checked_at: float | None = None
        self._error: str | None = None

    def current(self) -> RateTable:
        with self._lock:
            now = time.monotonic()
            if self._checked_at is None or now - self._checked_at >= self._refresh_interval_s:
                self._checked_at = now
                self._reload()
            if self._table is None:
                raise RatesUnavailable(self._error or "No exchange rates have been loaded.")
            return self._table

    def _reload(self) -> None:
        try:
            status = os.stat(self._path)
            signature = (status.st_mtime_ns, status.st_size)
            if signature == self._signature:
                return
            if status.st_size > RATES_DOCUMENT_MAX_BYTES:
                raise InvalidRatesDocument("The rates file is too large.")
            with open(self._path, "rb") as file:
                data = file.read(RATES_DOCUMENT_MAX_BYTES + 1)
            self._table = parse_ecb_xml(data)
            self._signature = signature
            self._error = None
        except (OSError, InvalidRatesDocument) as error:
            # The detail names no path: it may be shown to API clients.
            self._error = "The exchange rates file could not be read."
            if isinstance(error, InvalidRatesDocument):
                self._error = "The exchange rates file is malformed."

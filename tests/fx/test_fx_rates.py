"""The ECB eurofxref parser and the rates sources.

`eurofxref-sample.xml` is written by hand in the ECB's published daily format (namespaces,
gesmes envelope, single-quoted attributes, tabs), with rates close to those of the end of
2023; it is not an authoritative copy of a published file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.fx.rates import (
    RATES_DOCUMENT_MAX_BYTES,
    EcbXmlRatesSource,
    InvalidRatesDocument,
    NoRatesSource,
    RatesUnavailable,
    RateTable,
    StaticRatesSource,
    UnknownCurrencyPair,
    parse_ecb_xml,
)

SAMPLE = Path(__file__).with_name("eurofxref-sample.xml")
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"'
    ' xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">'
    "<gesmes:subject>Reference rates</gesmes:subject>"
)


def document(
    days: dict[str, dict[str, str]],
    *,
    quote: str = "'",
    head: str = HEAD,
    indent: str = "\n\t\t\t",
) -> bytes:
    """An eurofxref document in the published shape."""
    parts = [head, "<Cube>"]
    for day, rates in days.items():
        parts.append(f"<Cube time={quote}{day}{quote}>")
        parts.extend(
            f"{indent}<Cube currency={quote}{code}{quote} rate={quote}{rate}{quote}/>"
            for code, rate in rates.items()
        )
        parts.append("</Cube>")
    parts.append("</Cube></gesmes:Envelope>")
    return "".join(parts).encode()


def test_the_sample_file_parses_exactly() -> None:
    table = parse_ecb_xml(SAMPLE.read_bytes())
    assert table.date == datetime.date(2023, 12, 29)
    assert table.rates["USD"] == Decimal("1.1050")
    assert table.rates["GBP"] == Decimal("0.86905")
    assert len(table.rates) == 15
    assert table.per_euro("EUR") == 1
    assert table.cross(sell="USD", buy="JPY") == Fraction("156.33") / Fraction("1.1050")
    assert table.cross(sell="EUR", buy="USD") == Fraction("1.1050")
    assert table.cross(sell="USD", buy="EUR") == 1 / Fraction("1.1050")
    with pytest.raises(UnknownCurrencyPair):
        table.cross(sell="USD", buy="XAU")


def test_a_multi_day_document_yields_its_latest_day() -> None:
    data = document(
        {"2024-01-03": {"USD": "1.09"}, "2024-01-05": {"USD": "1.10"}, "2024-01-04": {"USD": "1.2"}}
    )
    table = parse_ecb_xml(data)
    assert (table.date, table.rates["USD"]) == (datetime.date(2024, 1, 5), Decimal("1.10"))


MALFORMED = [
    b"",
    b"not xml",
    b"<a>",
    document({"2024-01-05": {"USD": "1.1"}}).replace(b"gesmes.org", b"example.org"),
    document({"2024-01-05": {"USD": "1.1"}}).replace(b"ecb.int", b"example.org"),
    document({"2024-01-05": {"USD": "-1.1"}}),
    document({"2024-01-05": {"USD": "0"}}),
    document({"2024-01-05": {"USD": "1e3"}}),
    document({"2024-01-05": {"USD": " 1.1"}}),
    document({"2024-01-05": {"USD": "NaN"}}),
    document({"2024-01-05": {"USD": "Infinity"}}),
    document({"2024-01-05": {"usd": "1.1"}}),
    document({"2024-01-05": {"EUR": "1"}}),
    document({"2024-01-05": {}}),
    document({}),
    document({"2024-02-30": {"USD": "1.1"}}),
    document({"05/01/2024": {"USD": "1.1"}}),
    document({"2024-01-05": {"USD": "1.1"}}).replace(b"rate='1.1'/>", b"rate='1.1'><x/></Cube>"),
    document({"2024-01-05": {"USD": "1.1"}}).replace(b" rate='1.1'", b""),
    document({"2024-01-05": {"USD": "1.1"}}) + b"<trailing/>",
    # the same currency twice, the same day twice
    document({"2024-01-05": {"USD": "1.1"}}).replace(
        b"<Cube currency='USD' rate='1.1'/>",
        b"<Cube currency='USD' rate='1.1'/><Cube currency='USD' rate='1.2'/>",
    ),
    document({"2024-01-05": {"USD": "1.1"}}).replace(
        b"<Cube>", b"<Cube><Cube time='2024-01-05'><Cube currency='USD' rate='1'/></Cube>", 1
    ),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_documents_raise_the_typed_error(data: bytes) -> None:
    with pytest.raises(InvalidRatesDocument):
        parse_ecb_xml(data)


def test_entities_and_doctypes_are_refused_without_being_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("1.2345")
    external = (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'
    ).encode() + document({"2024-01-05": {"USD": "&x;"}}).split(b"?>", 1)[1]
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        + document({"2024-01-05": {"USD": "&c;"}}).split(b"?>", 1)[1]
    )
    for data in (external, laughs):
        with pytest.raises(InvalidRatesDocument):
            parse_ecb_xml(data)


CURRENT_CODES = (
    "USD", "JPY", "BGN", "CZK", "DKK", "GBP", "HUF", "PLN", "RON", "SEK",
    "CHF", "ISK", "NOK", "TRY", "AUD", "BRL", "CAD", "CNY", "HKD", "IDR",
    "ILS", "INR", "KRW", "MXN", "MYR", "NZD", "PHP", "SGD", "THB", "ZAR",
)  # fmt: skip
"""The ECB's currencies since 2023."""


def _history(last: datetime.date) -> bytes:
    """A document shaped like the ECB's full history (`eurofxref-hist.xml`): every weekday
    from 4 January 1999 to `last`, newest first, today's thirty currencies on each, written
    compactly as the ECB writes that file (double quotes, no indentation)."""
    rates = dict.fromkeys(CURRENT_CODES, "1.2345")
    days: dict[str, dict[str, str]] = {}
    day = last
    while day >= datetime.date(1999, 1, 4):
        if day.weekday() < 5:
            days[day.isoformat()] = rates
        day -= datetime.timedelta(days=1)
    return document(days, quote='"', indent="")


def test_the_full_history_file_is_read(tmp_path: Path) -> None:
    """The README names the historical file as a source: it is over 4 MiB by now (about
    35 bytes a rate, thirty-odd rates a day, 250-odd days a year since 1999)."""
    last = datetime.date(2026, 11, 24)
    data = _history(last)
    assert len(data) > 4 * 1024 * 1024
    path = tmp_path / "eurofxref-hist.xml"
    path.write_bytes(data)
    table = EcbXmlRatesSource(path, refresh_interval_s=60).current()
    assert table.date == last
    assert sorted(table.rates) == sorted(CURRENT_CODES)


def test_an_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidRatesDocument, match="at most"):
        parse_ecb_xml(b" " * (RATES_DOCUMENT_MAX_BYTES + 1))


# -- properties

codes = st.text(alphabet="ABCDFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)  # no E: never EUR
rate_texts = st.builds(
    lambda whole, fraction: whole + (f".{fraction}" if fraction else ""),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.text(alphabet="0123456789", max_size=8),
).filter(lambda text: Decimal(text) > 0)
days = st.dates(min_value=datetime.date(1999, 1, 4), max_value=datetime.date(2100, 1, 1))


@settings(deadline=None, max_examples=150)
@given(
    tables=st.dictionaries(
        days, st.dictionaries(codes, rate_texts, min_size=1, max_size=12), min_size=1, max_size=4
    ),
    quote=st.sampled_from(["'", '"']),
)
def test_generated_documents_round_trip(
    tables: dict[datetime.date, dict[str, str]], quote: str
) -> None:
    data = document({day.isoformat(): rates for day, rates in tables.items()}, quote=quote)
    table = parse_ecb_xml(data)
    latest = max(tables)
    assert table.date == latest
    assert dict(table.rates) == {code: Decimal(text) for code, text in tables[latest].items()}
    assert all(isinstance(rate, Decimal) for rate in table.rates.values())


@settings(deadline=None, max_examples=200)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_the_typed_error(data: bytes) -> None:
    with contextlib.suppress(InvalidRatesDocument):
        parse_ecb_xml(data)


@settings(deadline=None, max_examples=200)
@given(
    position=st.integers(min_value=0, max_value=10_000),
    replacement=st.binary(min_size=0, max_size=4),
)
def test_corrupted_samples_parse_or_raise_the_typed_error(
    position: int, replacement: bytes
) -> None:
    original = SAMPLE.read_bytes()
    index = position % len(original)
    data = original[:index] + replacement + original[index + 1 :]
    try:
        table = parse_ecb_xml(data)
    except InvalidRatesDocument:
        return
    assert all(rate > 0 for rate in table.rates.values())


@settings(deadline=None)
@given(value=st.text(max_size=20))
def test_attribute_values_are_never_misread_as_rates(value: str) -> None:
    data = document({"2024-01-05": {"USD": "1"}}).replace(b"'1'", quoteattr(value).encode())
    try:
        table = parse_ecb_xml(data)
    except InvalidRatesDocument:
        return
    assert table.rates["USD"] == Decimal(value)
    assert value.strip() == value and "e" not in value.lower()


# -- sources


def test_the_file_source_rereads_a_changed_file_and_keeps_the_last_good_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rates.xml"
    path.write_bytes(SAMPLE.read_bytes())
    source = EcbXmlRatesSource(path, refresh_interval_s=0.05)
    assert source.current().rates["USD"] == Decimal("1.1050")
    path.write_bytes(document({"2024-01-05": {"USD": "1.0950"}}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    time.sleep(0.06)
    assert source.current().rates["USD"] == Decimal("1.0950")
    path.write_bytes(b"<broken")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    time.sleep(0.06)
    assert source.current().rates["USD"] == Decimal("1.0950")  # the last good table


def test_without_a_readable_file_rates_are_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RatesUnavailable):
        EcbXmlRatesSource(tmp_path / "missing.xml", refresh_interval_s=60).current()
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<nope/>")
    with pytest.raises(RatesUnavailable, match="malformed"):
        EcbXmlRatesSource(bad, refresh_interval_s=60).current()
    with pytest.raises(RatesUnavailable):
        NoRatesSource().current()


def test_the_static_source_serves_its_table() -> None:
    table = RateTable(date=datetime.date(2024, 1, 5), rates={"USD": Decimal("1.1")})
    assert StaticRatesSource(table).current() is table

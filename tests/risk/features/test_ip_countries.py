"""The IP country table: the most specific network wins (checked against a brute-force
lookup over random nested networks), IPv4 and IPv6, the CSV file, and its refusals."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.risk.features.ip_countries import (
    InvalidIpCountries,
    IpCountryTable,
    ip_country_of,
    load_ip_countries,
)

COUNTRIES = ["FR", "DE", "AU", "US"]


def test_lookups_longest_prefix_first() -> None:
    table = IpCountryTable(
        [
            ("10.0.0.0/8", "US"),
            ("10.1.0.0/16", "FR"),
            ("10.1.2.0/24", "DE"),
            ("2001:db8::/32", "AU"),
        ]
    )
    assert table.country_of("10.9.9.9") == "US"
    assert table.country_of("10.1.9.9") == "FR"
    assert table.country_of("10.1.2.200") == "DE"
    assert table.country_of("10.1.3.0") == "FR"
    assert table.country_of("11.0.0.0") is None
    assert table.country_of("2001:db8:1::5") == "AU"
    assert table.country_of("::ffff:10.1.2.3") == "DE"  # IPv4-mapped IPv6
    assert table.country_of("not an address") is None
    assert ip_country_of(None, table=table) is None
    assert ip_country_of("10.1.2.3", table=table) == "DE"


def test_the_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("cidr,country\n# comment\n192.0.2.0/24,fr\n\n198.51.100.0/24, NL\n")
    table = load_ip_countries(path)
    assert table.country_of("192.0.2.77") == "FR"
    assert table.country_of("198.51.100.1") == "NL"
    path.write_text("192.0.2.0/24\n")
    with pytest.raises(InvalidIpCountries):
        load_ip_countries(path)


@pytest.mark.parametrize(
    "row", [("192.0.2.0/33", "FR"), ("nonsense", "FR"), ("192.0.2.0/24", "FRA"), ("::/0", "1A")]
)
def test_bad_rows_are_refused(row: tuple[str, str]) -> None:
    with pytest.raises(InvalidIpCountries):
        IpCountryTable([row])


networks = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**16 - 1),
        st.integers(min_value=16, max_value=32),
        st.sampled_from(COUNTRIES),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(rows=networks, probes=st.lists(st.integers(min_value=0, max_value=2**16 - 1), max_size=30))
def test_a_lookup_equals_the_most_specific_matching_network(
    rows: list[tuple[int, int, str]], probes: list[int]
) -> None:
    # Networks inside 10.0.0.0/16 so that random ones overlap often.
    parsed = {}
    for host, prefix, country in rows:
        network = ipaddress.ip_network((0x0A000000 + host, prefix), strict=False)
        parsed[network] = country  # a repeated network: the last row wins, as in the table
    table = IpCountryTable([(str(network), country) for network, country in parsed.items()])
    for probe in probes:
        address = ipaddress.ip_address(0x0A000000 + probe)
        matching = [network for network in parsed if address in network]
        expected = parsed[max(matching, key=lambda n: n.prefixlen)] if matching else None
        assert table.country_of(str(address)) == expected

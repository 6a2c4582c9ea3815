"""The country of an IP address, from a table the operator configures.

`BILLFOLD_RISK_IP_COUNTRIES` names a CSV file of ``cidr,country`` rows (``203.0.113.0/24,AU``;
IPv4 and IPv6; a header row ``cidr,country`` and ``#`` comments are skipped). It is loaded
once into sorted, non-overlapping integer ranges per IP version, so a lookup is one binary
search. When networks overlap, the most specific (longest prefix) wins.

`ip_country_of(ip)` is what the payment flows call when the caller gave no
`Movement.ip_country`; the feature computer does the same.
"""

from __future__ import annotations

import bisect
import csv
import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from billfold.kit.errors import ValidationFailed
from billfold.kit.settings import get_settings

__all__ = [
    "ROWS_MAX",
    "InvalidIpCountries",
    "IpCountryTable",
    "ip_country_of",
    "load_ip_countries",
]

ROWS_MAX = 2_000_000
"""Most rows a table may have (a full country database has about 500,000)."""
_COUNTRY = re.compile(r"[A-Z]{2}", re.ASCII)


class InvalidIpCountries(ValidationFailed):
    code = "invalid_ip_countries"
    title = "Invalid IP country table"


class IpCountryTable:
    """Sorted ranges per IP version: lookups are a binary search."""

    def __init__(self, rows: Iterable[tuple[str, str]]) -> None:
        networks: dict[int, list[tuple[int, int, int, str]]] = {4: [], 6: []}
        for count, (cidr, country) in enumerate(rows, start=1):
            if count > ROWS_MAX:
                raise InvalidIpCountries(f"An IP country table has at most {ROWS_MAX} rows.")
            try:
                network = ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError as error:
                raise InvalidIpCountries(f"Not a network: {cidr[:64]!r}.") from error
            code = country.strip().upper()
            if not _COUNTRY.fullmatch(code):
                raise InvalidIpCountries(f"Not an ISO 3166-1 alpha-2 country: {country[:8]!r}.")
            networks[network.version].append(
                (
                    int(network.network_address),
                    int(network.broadcast_address),
                    network.prefixlen,
                    code,
                )
            )
        self._starts: dict[int, list[int]] = {}
        self._ranges: dict[int, list[tuple[int, int, str]]] = {}
        for version, found in networks.items():
            ranges = _flatten(found)
            self._ranges[version] = ranges
            self._starts[version] = [start for start, _end, _country in ranges]

    def __len__(self) -> int:
        return sum(len(ranges) for ranges in self._ranges.values())

    def country_of(self, ip: str) -> str | None:
        """The country of `ip`, or None when it is not an address or no range holds it."""
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        starts = self._starts[address.version]
        position = bisect.bisect_right(starts, int(address)) - 1
        if position < 0:
            return None
        _start, end, country = self._ranges[address.version][position]
        return country if int(address) <= end else None


def _flatten(networks: list[tuple[int, int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping ranges, the longest prefix winning where networks overlap
    (networks either nest or are disjoint, so painting from least to most specific works)."""
    if not networks:
        return []
    # Boundaries where the answer may change, then the most specific network at each piece.
    points = sorted(
        {start for start, _e, _p, _c in networks} | {end + 1 for _s, end, _p, _c in networks}
    )
    ordered = sorted(networks, key=lambda network: network[2])  # least specific first
    answer: dict[int, str] = {}
    # Each network paints the pieces it covers (found by binary search); more specific
    # networks paint later. Real tables nest shallowly, so this stays near-linear.
    for start, end, _prefix, country in ordered:
        low = bisect.bisect_left(points, start)
        high = bisect.bisect_left(points, end + 1)
        for index in range(low, high):
            answer[points[index]] = country
    ranges: list[tuple[int, int, str]] = []
    for index, point in enumerate(points[:-1]):
        painted = answer.get(point)
        if painted is None:
            continue
        end = points[index + 1] - 1
        if ranges and ranges[-1][2] == painted and ranges[-1][1] + 1 == point:
            ranges[-1] = (ranges[-1][0], end, painted)
        else:
            ranges.append((point, end, painted))
    return ranges


def load_ip_countries(path: str | Path) -> IpCountryTable:
    """Read a ``cidr,country`` CSV file."""

    def rows() -> Iterable[tuple[str, str]]:
        with Path(path).open(newline="", encoding="utf-8") as file:
            for row in csv.reader(file):
                if not row or row[0].lstrip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise InvalidIpCountries("Each row is cidr,country.")
                if row[0].strip().lower() == "cidr":
                    continue
                yield row[0], row[1]

    return IpCountryTable(rows())


@lru_cache(maxsize=1)
def _configured_table(path: str | None) -> IpCountryTable | None:
    return None if path is None else load_ip_countries(path)


def ip_country_of(ip: str | None, *, table: IpCountryTable | None = None) -> str | None:
    """The country of `ip` from `table`, or from the table `BILLFOLD_RISK_IP_COUNTRIES`
    names (loaded once); None when unknown or nothing is configured."""
    if ip is None:
        return None
    if table is None:
        table = _configured_table(get_settings().risk_ip_countries)
    return None if table is None else table.country_of(ip)

"""NAT64 (RFC 6052): on an IPv6-only network DNS64 answers `64:ff9b::a.b.c.d` for a host
with only an A record, and the whole well-known prefix used to be refused (Python files it
under the reserved `::/8`), so such a network could deliver to no IPv4-only receiver. The
address is now judged by the IPv4 address it carries; the local-use `64:ff9b:1::/48` stays
refused."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.events.ssrf import UnsafeWebhookUrl, address_is_public, resolve_target

pytestmark = pytest.mark.anyio


def _nat64(address: ipaddress.IPv4Address) -> str:
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address)))


@given(st.ip_addresses(v=4))
def test_a_nat64_address_is_as_public_as_the_ipv4_address_it_carries(
    address: ipaddress.IPv4Address,
) -> None:
    assert address_is_public(_nat64(address)) is address_is_public(str(address))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::808:808", True),  # 8.8.8.8
        ("64:ff9b::8.8.8.8", True),
        ("64:ff9b::7f00:1", False),  # 127.0.0.1
        ("64:ff9b::a00:1", False),  # 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # 169.254.169.254, the cloud metadata service
        ("64:ff9b::6440:1", False),  # 100.64.0.1, shared address space
        ("64:ff9b::c000:8", False),  # 192.0.0.8, IETF protocol assignments
        ("64:ff9b::", False),  # 0.0.0.0
        ("64:ff9b::1:808:808", False),  # outside the /96: not a NAT64 address
        ("64:ff9b:1::808:808", False),  # local-use NAT64 (RFC 8215)
        ("64:ff9b:1:ffff::808:808", False),
    ],
)
def test_nat64_addresses(address: str, public: bool) -> None:
    assert address_is_public(address) is public


async def test_a_nat64_literal_carrying_a_private_address_is_refused() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await resolve_target("https://[64:ff9b::a9fe:a9fe]/hook", allow_private=False)


async def test_a_nat64_literal_carrying_a_public_address_is_accepted() -> None:
    target = await resolve_target("https://[64:ff9b::808:808]/hook", allow_private=False)
    assert target.address == "64:ff9b::808:808"
    assert target.url() == "https://[64:ff9b::808:808]/hook"

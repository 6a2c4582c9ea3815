"""Refusing webhook targets inside the network (SSRF): checked when an endpoint is saved and
again when delivering (the sender reuses a check for `RESOLVED_TTL_S`), against every
address the host resolves to then (DNS rebinding), and the request goes to the addresses
that were checked (the next when one cannot be reached), not to a second lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from billfold.kit.errors import ValidationFailed

__all__ = ["ResolvedTarget", "UnsafeWebhookUrl", "address_is_public", "resolve_target"]

URL_LENGTH_MAX = 2048
RESOLVE_TIMEOUT_S = 5.0


class UnsafeWebhookUrl(ValidationFailed):
    code = "unsafe_webhook_url"
    title = "Webhook URL refused"


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A URL and the checked addresses to connect to, in the order to try them."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    """Every address the host resolved to, each checked, in the resolver's order (RFC 6724
    destination address selection), without repeats: the sender tries the next when it
    cannot connect to one."""
    path: str

    @property
    def address(self) -> str:
        """The first address to try."""
        return self.addresses[0]

    def url(self) -> str:
        """The URL to request, naming the host (in its ASCII form): the connection itself
        goes to `address` (the sender's network backend pins it)."""
        return f"{self.scheme}://{self.host_header}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


_NEVER_A_RECEIVER = (
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments: anycast, NAT64, DS-Lite
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated, RFC 3879): a private network
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): a private network's
)
"""Blocks Python 3.11's `ipaddress` counts as global in part, where no webhook receiver is."""

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix (RFC 6052): on an IPv6-only network, DNS64 answers a host
that has only an A record with its IPv4 address in the last 32 bits, and the operator's
NAT64 gateway connects to that IPv4 address. Python files the prefix under the reserved
`::/8`; the address is as public as the IPv4 address it carries, no more."""


def _nat64_embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a well-known-prefix NAT64 address carries (its last 32 bits)."""
    if ip not in _NAT64_WELL_KNOWN:
        return None
    return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)


def address_is_public(address: str) -> bool:
    """Whether connecting to `address` leaves the machine and its private networks: refuses
    private, loopback, link-local, site-local, multicast, reserved, unspecified and shared
    addresses, the IETF protocol assignments (192.0.0.0/24), every IPv4-mapped IPv6 address
    (a public host has an A record for its IPv4), and the 6to4/Teredo forms of refused IPv4
    addresses. A NAT64 address of the well-known prefix (`64:ff9b::/96`, what DNS64 answers
    on an IPv6-only network) is judged by the IPv4 address it carries, as that address
    would be; the local-use prefix `64:ff9b:1::/48` is refused."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return False
        translated = _nat64_embedded(ip)
        if translated is not None:
            return address_is_public(str(translated))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not address_is_public(str(embedded)):
            return False
    if any(ip in network for network in _NEVER_A_RECEIVER):
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def split_url(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """Scheme, host, port and path+query of a webhook URL, or `UnsafeWebhookUrl`. The host
    is in its ASCII form (an internationalized name's IDNA A-labels, `xn--…`): the name
    that is resolved, and the one the `Host` header and TLS SNI carry."""
    if len(url) > URL_LENGTH_MAX:
        raise UnsafeWebhookUrl(f"a webhook URL is at most {URL_LENGTH_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)  # what the sender can send (no control characters, …)
    except (ValueError, httpx.InvalidURL) as error:
        raise UnsafeWebhookUrl("not a valid URL") from error
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeWebhookUrl(f"a webhook URL must use {' or '.join(allowed)}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("a webhook URL names a host and carries no credentials")
    if parts.fragment:
        raise UnsafeWebhookUrl("a webhook URL has no fragment")
    if port == 0:  # no server listens there: it used to be read as no port, so 443 or 80
        raise UnsafeWebhookUrl("not a valid URL")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as error:  # an empty label, one over 63 characters, …
        raise UnsafeWebhookUrl("not a valid host name") from error
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


async def resolve_target(url: str, *, allow_private: bool) -> ResolvedTarget:
    """Resolve the URL's host now and check every address it resolves to."""
    scheme, host, port, path = split_url(url, allow_private=allow_private)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError) as error:
        raise UnsafeWebhookUrl(f"the host {host!r} does not resolve") from error
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnsafeWebhookUrl(f"the host {host!r} does not resolve")
    if not allow_private:
        refused = [a for a in addresses if not address_is_public(a)]
        if refused:
            raise UnsafeWebhookUrl(
                f"the host {host!r} resolves to a private, loopback, link-local or reserved address"
            )
    ordered = tuple(dict.fromkeys(addresses))  # one per address: each socket type's repeats
    return ResolvedTarget(scheme=scheme, host=host, port=port, addresses=ordered, path=path)

"""The bearer token of a request's `Authorization` header, read as RFC 6750 writes it.

``credentials = "Bearer" 1*SP b64token`` (RFC 6750 section 2.1): the scheme is
case-insensitive (RFC 9110 section 11.1), one or more spaces separate it from the token, and
whitespace around the field value is not part of it (RFC 9110 section 5.5). Every place
that reads the header reads it here, so an API key, an end user's token and an operator's
session are found the same way, and the idempotency scope and the 401's challenge agree
with the authenticator about what was presented. The token's own syntax is checked later,
by whoever verifies it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["bearer_token"]

_WHITESPACE = " \t"


def bearer_token(values: Sequence[str]) -> str | None:
    """The token of exactly one `Authorization` header value with the Bearer scheme, else
    None (no header, several, another scheme, or no token)."""
    if len(values) != 1:
        return None
    scheme, separator, rest = values[0].strip(_WHITESPACE).partition(" ")
    token = rest.lstrip(" ")
    if not separator or scheme.lower() != "bearer" or not token:
        return None
    return token

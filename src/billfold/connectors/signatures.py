"""Signed provider notifications: HMAC-SHA256 over the timestamp and the exact body.

The header is ``Billfold-Signature: t=<unix seconds>,v1=<64 hex digits>``, where ``v1`` is
``HMAC-SHA256(secret, "<t>." + body)``. A receiver recomputes it, compares in constant time
and refuses a timestamp further than the tolerance from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from billfold.kit.errors import Unauthorized

__all__ = [
    "CHALLENGE",
    "SIGNATURE_HEADER",
    "SIGNATURE_HEADER_LENGTH_MAX",
    "InvalidSignature",
    "sign",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "Billfold-Signature"
SIGNATURE_HEADER_LENGTH_MAX = 200
_HEADER = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-f]{64})", re.ASCII)
CHALLENGE = 'BillfoldSignature realm="billfold-notifications"'
"""The scheme a 401 names (RFC 9110 section 11.6.1: every 401 carries a challenge): the
`Billfold-Signature` header, not an `Authorization` one."""


class InvalidSignature(Unauthorized):
    code = "invalid_signature"
    title = "Invalid notification signature"

    def response_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": CHALLENGE}


def sign(*, secret: bytes, timestamp_s: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>`."""
    message = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_header(*, secret: bytes, timestamp_s: int, body: bytes) -> str:
    return f"t={timestamp_s},v1={sign(secret=secret, timestamp_s=timestamp_s, body=body)}"


def verify(*, secret: bytes, header: str | None, body: bytes, now_s: int, tolerance_s: int) -> None:
    """Raise :class:`InvalidSignature` unless `header` signs `body` recently with `secret`."""
    if header is None or len(header) > SIGNATURE_HEADER_LENGTH_MAX:
        raise InvalidSignature("The notification carries no valid signature header.")
    match = _HEADER.fullmatch(header.strip())
    if match is None:
        raise InvalidSignature("The signature header is malformed.")
    timestamp_s = int(match.group(1))
    if abs(now_s - timestamp_s) > tolerance_s:
        raise InvalidSignature("The signature timestamp is outside the tolerance.")
    expected = sign(secret=secret, timestamp_s=timestamp_s, body=body)
    if not hmac.compare_digest(expected, match.group(2)):
        raise InvalidSignature("The signature does not match the body.")

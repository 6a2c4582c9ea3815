"""RFC 6238 time-based one-time passwords over pyotp. Pure functions, no I/O.

Users' authenticator apps use the common profile: HMAC-SHA1, 6 digits, 30-second steps.
A code is accepted for the current step or one step either side (clock drift and typing
time), and only for a step later than the last accepted one, so a code that worked once,
or an older one, is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import pyotp

__all__ = [
    "TOTP_DIGITS",
    "TOTP_SECRET_CHARACTERS",
    "TOTP_STEP_S",
    "TOTP_WINDOW_STEPS",
    "TotpAlgorithm",
    "matching_step",
    "new_totp_secret",
    "provisioning_uri",
    "totp_code",
    "totp_step",
]

TOTP_DIGITS = 6
TOTP_STEP_S = 30
TOTP_WINDOW_STEPS = 1
"""Steps accepted either side of the current one."""
TOTP_SECRET_CHARACTERS = 32
"""Base32 characters of a new seed: 160 bits, RFC 4226's recommended length."""
TotpAlgorithm = Literal["sha1", "sha256", "sha512"]
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_ISSUER_LENGTH_MAX = 100
_ACCOUNT_LENGTH_MAX = 254


def new_totp_secret() -> str:
    """A fresh seed, generated here on the server and shown to the user once."""
    return pyotp.random_base32(TOTP_SECRET_CHARACTERS)


def _totp(secret: str, *, digits: int, algorithm: TotpAlgorithm) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=digits, digest=_DIGESTS[algorithm], interval=TOTP_STEP_S)


def totp_step(at_s: int) -> int:
    """The RFC 6238 time step T = floor(unix time / 30)."""
    return at_s // TOTP_STEP_S


def totp_code(
    secret: str,
    *,
    at_s: int,
    digits: int = TOTP_DIGITS,
    algorithm: TotpAlgorithm = "sha1",
) -> str:
    """The code for the step containing ``at_s`` (Unix seconds)."""
    return _totp(secret, digits=digits, algorithm=algorithm).generate_otp(totp_step(at_s))


def matching_step(secret: str, *, code: str, at_s: int, after_step: int | None) -> int | None:
    """The step ``code`` belongs to, within the window around ``at_s`` and later than
    ``after_step``; None when it matches none (wrong, too old, or replayed)."""
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = _totp(secret, digits=TOTP_DIGITS, algorithm="sha1")
    current = totp_step(at_s)
    matched: int | None = None
    # Every candidate is computed and compared, so timing does not tell which one matched.
    for step in range(current - TOTP_WINDOW_STEPS, current + TOTP_WINDOW_STEPS + 1):
        fresh = after_step is None or step > after_step
        if hmac.compare_digest(totp.generate_otp(step), code) and fresh and matched is None:
            matched = step
    return matched


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The `otpauth://totp/…` URI an authenticator app scans as a QR code."""
    return _totp(secret, digits=TOTP_DIGITS, algorithm="sha1").provisioning_uri(
        name=account[:_ACCOUNT_LENGTH_MAX], issuer_name=issuer[:_ISSUER_LENGTH_MAX]
    )

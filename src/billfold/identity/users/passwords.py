"""End users' password policy; hashing is shared with operators (``identity.passwords``)."""

from __future__ import annotations

from billfold.identity.users.errors import WeakPassword

__all__ = ["PASSWORD_LENGTH_MAX", "PASSWORD_LENGTH_MIN", "check_password_policy"]

PASSWORD_LENGTH_MIN = 10
PASSWORD_LENGTH_MAX = 256
"""Bounds the work one sign-in attempt can cost, and the request that carries it."""


def check_password_policy(password: str) -> None:
    """Refuse a password too short, too long or blank. NIST SP 800-63B: length matters,
    composition rules do not, so there are none."""
    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        raise WeakPassword(
            f"A password has {PASSWORD_LENGTH_MIN} to {PASSWORD_LENGTH_MAX} characters.",
            length_min=PASSWORD_LENGTH_MIN,
            length_max=PASSWORD_LENGTH_MAX,
        )
    if not password.strip():
        raise WeakPassword("A password cannot be blank.")

"""Operators' passwords: the policy, one-time passwords, and the default hasher
(Argon2id, RFC 9106's low-memory profile: 64 MiB, 3 passes; see ``identity.passwords``)."""

from __future__ import annotations

import secrets

from billfold.identity.operators.errors import InvalidPassword
from billfold.identity.passwords import DEFAULT_PASSWORD_PARAMETERS, passwords_for

__all__ = [
    "DEFAULT_PASSWORDS",
    "ONE_TIME_PASSWORD_BYTES",
    "PASSWORD_LENGTH_MAX",
    "PASSWORD_LENGTH_MIN",
    "check_password_policy",
    "new_one_time_password",
]

PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256
"""Bounds the work one sign-in attempt can cost, and the request that carries it."""
ONE_TIME_PASSWORD_BYTES = 18
"""144 random bits, 24 characters: typed once, then changed."""


def check_password_policy(password: str, *, email: str) -> None:
    """Refuse a password that is too short, too long, blank or the email itself.

    NIST SP 800-63B: length matters, composition rules do not, so there are none.
    """
    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        raise InvalidPassword(
            f"A password has {PASSWORD_LENGTH_MIN} to {PASSWORD_LENGTH_MAX} characters.",
            length_min=PASSWORD_LENGTH_MIN,
            length_max=PASSWORD_LENGTH_MAX,
        )
    if not password.strip() or password.strip().casefold() == email.casefold():
        raise InvalidPassword("A password cannot be blank or the email address.")


def new_one_time_password() -> str:
    """A random password for a new operator, shown once and to be changed at first use."""
    return secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)


DEFAULT_PASSWORDS = passwords_for(DEFAULT_PASSWORD_PARAMETERS)
"""RFC 9106 section 4's second recommended option, for memory-constrained servers."""
